# `PayoutBatch.wallet_request` tells a photographer's one-wallet request from a run over every due
# wallet (the metric of the last completed run counts runs only); the requests made so far are
# the batches whose trigger the request's consumer wrote ("wallet request: ..."). A NOT NULL
# column with a database default (kept: the release before this one inserts batches without
# naming it while both run during a deploy) and a nullable one change only the catalog; the
# backfill reads the batches (one a day plus the requests). ALTER TABLE waits for an ACCESS
# EXCLUSIVE lock that payouts queue behind: give up (and retry the deploy) rather than stall them.

from django.db import migrations, models

BACKFILL_WALLET_REQUESTS_SQL = (
    "UPDATE payouts_payoutbatch SET wallet_request = true WHERE trigger LIKE 'wallet request:%'"
)


class Migration(migrations.Migration):
    dependencies = [
        ("payouts", "0003_payout_checked_at"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="payoutbatch",
            name="wallet_request",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="payout",
            name="paid_after_failure_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunSQL(BACKFILL_WALLET_REQUESTS_SQL, migrations.RunSQL.noop),
    ]
