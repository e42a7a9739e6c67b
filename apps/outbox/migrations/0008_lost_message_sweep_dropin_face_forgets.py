# The lost-message sweep's partial index takes `dropin.face_forget` (a deleted face, or a photo's
# unstored faces, forgotten at the face backend, flow dropin_face_forgets). Dropped and built again
# CONCURRENTLY: every business transaction writes outbox rows, and a plain CREATE INDEX would
# hold their inserts for the whole build. Meanwhile the sweep reads without the index, which is only slower.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0007_lost_message_sweep_refund_failed_emails"),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name="outboxmessage",
            name="outbox_lost_message_sweep",
        ),
        AddIndexConcurrently(
            model_name="outboxmessage",
            index=models.Index(
                condition=models.Q(
                    (
                        "topic__in",
                        (
                            "orders.links_requested",
                            "checkout.shipped",
                            "checkout.refunded",
                            "tenancy.member_invited",
                            "refund.restock_requested",
                            "catalog.photo_withdrawn",
                            "tenancy.password_reset_requested",
                            "attendee.link_replaced",
                            "refund.failed_after_landing",
                            "dropin.face_forget",
                        ),
                    )
                ),
                fields=["topic", "created_at"],
                name="outbox_lost_message_sweep",
            ),
        ),
    ]
