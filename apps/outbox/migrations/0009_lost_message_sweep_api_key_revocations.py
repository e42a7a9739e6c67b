# The lost-message sweep's partial index takes `tenancy.api_key_revoked` (a revoked API key's mark
# in the key cache, flow api_key_revocations). Dropped and built again CONCURRENTLY: every business
# transaction writes outbox rows, and a plain CREATE INDEX would hold their inserts for the whole
# build. Meanwhile the sweep reads without the index, which is only slower.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0008_lost_message_sweep_dropin_face_forgets"),
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
                            "tenancy.api_key_revoked",
                        ),
                    )
                ),
                fields=["topic", "created_at"],
                name="outbox_lost_message_sweep",
            ),
        ),
    ]
