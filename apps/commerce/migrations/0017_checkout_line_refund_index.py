# The index of the lines an item refund names (CheckoutLine.refund, 0015), partial: almost no
# line is ever refunded. Built CONCURRENTLY: checkouts write lines all the time.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("commerce", "0016_checkout_client_holds"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="checkoutline",
            index=models.Index(
                condition=models.Q(refund__isnull=False), fields=["refund"], name="commerce_line_refund_idx"
            ),
        ),
    ]
