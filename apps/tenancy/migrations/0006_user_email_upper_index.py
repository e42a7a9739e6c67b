# An index of accounts by their address upper-cased: the studio's sign-in takes the address in
# any case, and invitations match an account by it (`email__iexact`, run as UPPER(email) =
# UPPER(...)), which without it scans every account on each attempt. Built CONCURRENTLY: people
# sign up and change their address while it builds.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("tenancy", "0005_membership_invitation_typed_email_restored"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="user",
            index=models.Index(Upper("email"), name="tenancy_user_email_upper"),
        ),
    ]
