# Who a checkout holds stock for: the client's network (an IPv4 address or an IPv6 /64) and a
# digest of the shop session's key, so `checkout_create` can count, under a lock, a network's
# unpaid holds of a print and a session's open checkouts. Existing checkouts get "" (unknown,
# not counted). The indexes are built CONCURRENTLY: checkouts keep being written meanwhile.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("commerce", "0015_refund_lines"),
    ]

    operations = [
        migrations.AddField(
            model_name="checkout",
            name="client_network",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
        migrations.AddField(
            model_name="checkout",
            name="client_session",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
        AddIndexConcurrently(
            model_name="checkout",
            index=models.Index(
                condition=~models.Q(client_network=""),
                fields=["tenant", "client_network", "expires_at"],
                name="commerce_checkout_net_holds",
            ),
        ),
        AddIndexConcurrently(
            model_name="checkout",
            index=models.Index(
                condition=models.Q(status__in=["reserving", "awaiting_payment_session", "awaiting_payment"])
                & ~models.Q(client_session=""),
                fields=["tenant", "client_session"],
                name="commerce_checkout_session_open",
            ),
        ),
    ]
