# The key store is range-partitioned by day on created_at, which Django cannot express: the
# table is created by hand (database primary key (id, created_at), because a unique constraint on
# a partitioned table must include the partition key) while the model state is kept as usual.
# Partitions are created after `migrate` by the post_migrate hook in apps.idempotency.apps and
# then by the `idempotency.maintain_partitions` beat task.

import django.db.models.deletion
from django.db import migrations, models

from apps.tenancy.rls import EnableTenantRLS

CREATE_TABLE_SQL = """
CREATE TABLE "idempotency_idempotencykey" (
    "id" bigserial NOT NULL,
    "tenant_id" bigint NOT NULL
        CONSTRAINT "idempotencykey_tenant_fk" REFERENCES "tenancy_organization" ("id") ON DELETE RESTRICT,
    "caller" varchar(64) NOT NULL,
    "key" varchar(255) NOT NULL,
    "fingerprint" varchar(64) NOT NULL,
    "method" varchar(10) NOT NULL,
    "path" text NOT NULL,
    "response_status" smallint NOT NULL,
    "response_body" bytea NOT NULL,
    "response_content_type" varchar(255) NOT NULL,
    "request_id" varchar(128) NOT NULL,
    "created_at" timestamp with time zone NOT NULL,
    CONSTRAINT "idempotency_idempotencykey_pkey" PRIMARY KEY ("id", "created_at"),
    CONSTRAINT "idempotencykey_status_below_400" CHECK ("response_status" >= 100 AND "response_status" < 400),
    CONSTRAINT "idempotencykey_key_not_empty" CHECK (NOT ("key" = ''))
) PARTITION BY RANGE ("created_at");
"""
DROP_TABLE_SQL = 'DROP TABLE "idempotency_idempotencykey";'


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('tenancy', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(CREATE_TABLE_SQL, reverse_sql=DROP_TABLE_SQL)],
            state_operations=[
                migrations.CreateModel(
                    name='IdempotencyKey',
                    fields=[
                        ('id', models.BigAutoField(primary_key=True, serialize=False)),
                        ('caller', models.CharField(help_text='api_key:<id> or user:<id>', max_length=64)),
                        ('key', models.CharField(max_length=255)),
                        ('fingerprint', models.CharField(help_text='sha256 of method, path and canonical body', max_length=64)),
                        ('method', models.CharField(max_length=10)),
                        ('path', models.TextField()),
                        ('response_status', models.PositiveSmallIntegerField()),
                        ('response_body', models.BinaryField()),
                        ('response_content_type', models.CharField(max_length=255)),
                        ('request_id', models.CharField(blank=True, max_length=128)),
                        ('created_at', models.DateTimeField()),
                        ('tenant', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='tenancy.organization')),
                    ],
                    options={
                        'constraints': [models.CheckConstraint(condition=models.Q(('response_status__gte', 100), ('response_status__lt', 400)), name='idempotencykey_status_below_400'), models.CheckConstraint(condition=models.Q(('key', ''), _negated=True), name='idempotencykey_key_not_empty')],
                    },
                ),
            ],
        ),
        EnableTenantRLS("idempotencykey"),
    ]
