# The shop's "find my orders" pages (/s/<studio>/orders/...) would hide an event slugged "orders":
# reserve it like "cart" and "checkouts". Adding the constraint fails if a studio already has such
# an event (rename it first).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0004_stock_restock"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="event",
            name="catalog_event_slug_not_reserved",
        ),
        migrations.AddConstraint(
            model_name="event",
            constraint=models.CheckConstraint(
                condition=models.Q(("slug__in", ("cart", "checkouts", "orders")), _negated=True),
                name="catalog_event_slug_not_reserved",
            ),
        ),
    ]
