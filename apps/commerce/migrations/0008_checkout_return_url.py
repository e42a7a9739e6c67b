from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0007_receipt_queued_at_checkout_capture_requested_at"),
    ]

    operations = [
        # A constant default: PostgreSQL adds the column without rewriting the table.
        migrations.AddField(
            model_name="checkout",
            name="return_url",
            field=models.URLField(blank=True, default="", max_length=2000),
        ),
    ]
