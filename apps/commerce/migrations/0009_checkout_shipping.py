import django.db.models.deletion
from django.db import migrations, models

from apps.tenancy.rls import EnableTenantRLS

# The shipping row references its checkout through a composite same-tenant foreign key (the
# single-column one is left out, as for lines: it is written in the checkout's own statement).
SAME_TENANT_FK = (
    'ALTER TABLE "commerce_checkoutshipping" ADD CONSTRAINT "commerce_shipping_checkout_same_tenant" '
    "FOREIGN KEY (tenant_id, checkout_id) REFERENCES commerce_checkout (tenant_id, id) ON DELETE CASCADE"
)


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0008_checkout_return_url"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="CheckoutShipping",
            fields=[
                (
                    "checkout",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="shipping",
                        serialize=False,
                        to="commerce.checkout",
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                ("line1", models.CharField(max_length=200)),
                ("line2", models.CharField(blank=True, default="", max_length=200)),
                ("city", models.CharField(max_length=100)),
                ("postal_code", models.CharField(max_length=20)),
                ("region", models.CharField(blank=True, default="", max_length=100)),
                ("country", models.CharField(max_length=2)),
                ("phone", models.CharField(blank=True, default="", max_length=32)),
                (
                    "fulfilment_status",
                    models.CharField(
                        choices=[("unfulfilled", "Not shipped yet"), ("shipped", "Shipped")],
                        default="unfulfilled",
                        max_length=12,
                    ),
                ),
                ("shipped_at", models.DateTimeField(blank=True, null=True)),
                ("carrier", models.CharField(blank=True, default="", max_length=100)),
                ("tracking_reference", models.CharField(blank=True, default="", max_length=200)),
                (
                    "tenant",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tenancy.organization",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        condition=models.Q(("fulfilment_status", "unfulfilled")),
                        fields=["tenant"],
                        name="commerce_shipping_unfulfilled",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "checkout"), name="commerce_shipping_unique_tenant_checkout"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("fulfilment_status__in", ["unfulfilled", "shipped"])),
                        name="commerce_shipping_fulfilment_status_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                ("fulfilment_status", "shipped"),
                                ("shipped_at__isnull", False),
                                models.Q(("carrier", ""), _negated=True),
                            ),
                            models.Q(("fulfilment_status", "unfulfilled"), ("shipped_at__isnull", True)),
                            _connector="OR",
                        ),
                        name="commerce_shipping_shipped_iff_shipped_at",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("country__regex", "^[A-Z]{2}$")), name="commerce_shipping_country_iso"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("name", ""), _negated=True),
                            models.Q(("line1", ""), _negated=True),
                            models.Q(("city", ""), _negated=True),
                            models.Q(("postal_code", ""), _negated=True),
                        ),
                        name="commerce_shipping_address_complete",
                    ),
                ],
            },
        ),
        migrations.RunSQL(
            sql=SAME_TENANT_FK,
            reverse_sql='ALTER TABLE "commerce_checkoutshipping" DROP CONSTRAINT "commerce_shipping_checkout_same_tenant"',
        ),
        EnableTenantRLS("checkoutshipping"),
    ]
