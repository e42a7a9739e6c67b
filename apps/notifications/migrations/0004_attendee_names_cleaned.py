# Attendee names follow the rule of titles since the attendee import, the selfie API and the
# dashboard refuse a name with a control character or a text-direction override (the name greets
# the attendee in e-mails: a line break starts a new line, an override reorders the text around
# it). Names stored before that rule may hold them; this cleans those with the same rule: the
# characters go (one that is whitespace, a tab or a line break, reads as a space, so words it
# separated stay apart), runs of whitespace become one space, and the ends are stripped. A name
# with nothing else is left empty, which a name may be. Every other name is left as it is.
#
# In batches of BATCH attendees in id order, one transaction each (each reads and writes a bounded
# set of rows and holds their locks briefly; a run that stopped starts again cleanly). A name the
# import changed meanwhile is left to its new value. Runs in the system context: attendee rows
# are under forced RLS, every studio's. Not reversible in meaning (the removed characters are not
# kept), and nothing needs them back: the reverse is a no-op.

import unicodedata

from django.db import migrations, transaction

BATCH = 1000

# The rule of `apps.core.text.title_problem` when this migration was written: control characters
# (category Cc) and the bidirectional embeddings, overrides and isolates.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

NEXT_BATCH_SQL = "SELECT id, name FROM notifications_attendee WHERE id > %s ORDER BY id LIMIT %s"
UPDATE_SQL = """
UPDATE notifications_attendee AS a SET name = c.name
  FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS c(id, old_name, name)
 WHERE a.id = c.id AND a.name = c.old_name
"""


def refused(ch: str) -> bool:
    return ch in BIDI_CONTROLS or unicodedata.category(ch) == "Cc"


def clean_name(name: str) -> str:
    """`name` with the refused characters gone (whitespace ones read as a space), whitespace
    collapsed to single spaces, and stripped."""
    return " ".join("".join(" " if ch.isspace() else "" if refused(ch) else ch for ch in name).split())


def clean_attendee_names_on(connection, *, batch: int = BATCH) -> int:
    """Clean every stored attendee name the rule refuses (see above); returns how many changed.
    Opens one transaction per batch (a savepoint inside the caller's transaction)."""
    changed, after = 0, 0
    while True:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.system_context', 'on', true)")
            cursor.execute(NEXT_BATCH_SQL, [after, batch])
            rows = cursor.fetchall()
            dirty = [(pk, name, clean_name(name)) for pk, name in rows if any(refused(ch) for ch in name)]
            if dirty:
                cursor.execute(UPDATE_SQL, [list(column) for column in zip(*dirty, strict=True)])
                changed += cursor.rowcount
            cursor.execute("SELECT set_config('app.system_context', '', true)")
        if len(rows) < batch:
            return changed
        after = rows[-1][0]


def clean_attendee_names(apps, schema_editor):
    clean_attendee_names_on(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False  # one transaction per batch

    dependencies = [
        ("notifications", "0003_attendee_link_generation"),
    ]

    operations = [
        migrations.RunPython(clean_attendee_names, migrations.RunPython.noop),
    ]
