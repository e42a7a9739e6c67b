# A shipping address needs no postal code in a country that has none (Ghana, Hong Kong, the UAE,
# ...: `apps.commerce.countries.NO_POSTAL_CODE`; the checkout service still requires one elsewhere).
# The completeness check is replaced by a weaker one that every row already meets; adding it
# scans the shipping rows (a few per order) under the table's lock: give up rather than stall
# checkouts behind it (and retry the deploy).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0023_refund_under_way_index"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.RemoveConstraint(
            model_name="checkoutshipping",
            name="commerce_shipping_address_complete",
        ),
        migrations.AddConstraint(
            model_name="checkoutshipping",
            constraint=models.CheckConstraint(
                condition=models.Q(~models.Q(name=""), ~models.Q(line1=""), ~models.Q(city="")),
                name="commerce_shipping_address_complete",
            ),
        ),
    ]
