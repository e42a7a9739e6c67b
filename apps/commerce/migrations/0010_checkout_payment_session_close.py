from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0009_checkout_shipping"),
    ]

    operations = [
        # Nullable, no default: PostgreSQL adds the columns without rewriting the table. The
        # table's RLS policy covers them (it filters rows on tenant_id). Closes queued before this
        # migration have no `queued_at`, so the sweep never asks for them again; each session's
        # own expiry still bounds them.
        migrations.AddField(
            model_name="checkout",
            name="payment_session_close_queued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="checkout",
            name="payment_session_close_concluded_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="checkout",
            index=models.Index(
                condition=models.Q(
                    ("payment_session_close_concluded_at__isnull", True),
                    ("payment_session_close_queued_at__isnull", False),
                ),
                fields=["expires_at"],
                name="commerce_checkout_close_owed",
            ),
        ),
    ]
