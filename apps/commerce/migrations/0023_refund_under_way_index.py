# A partial index of the refunds under way (requested or submitted, not landed): each payout reads
# its wallet's share of them (`wallet_refund_holds`), which without it scans every refund ever
# made. Built CONCURRENTLY: refunds are written while it builds (a plain CREATE INDEX would hold
# their inserts and updates for the whole build); meanwhile the reads only go slower.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("commerce", "0022_refund_settled_outside"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="refund",
            index=models.Index(
                condition=models.Q(("landed_at__isnull", True), ("status__in", ["requested", "submitted"])),
                fields=["tenant", "created_at"],
                name="commerce_refund_under_way",
            ),
        ),
    ]
