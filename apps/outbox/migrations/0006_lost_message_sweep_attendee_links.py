# The lost-message sweep's partial index takes `attendee.link_replaced` (the e-mail with an
# attendee's new link, flow attendee_link_emails). Dropped and built again CONCURRENTLY: every
# business transaction writes outbox rows, and a plain CREATE INDEX would hold their inserts
# for the whole build. Meanwhile the sweep reads without the index, which is only slower.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0005_lost_message_sweep_password_resets"),
        ("tenancy", "0003_membership_invitation_email"),
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
                        ),
                    )
                ),
                fields=["topic", "created_at"],
                name="outbox_lost_message_sweep",
            ),
        ),
    ]
