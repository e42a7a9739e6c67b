"""`manage.py text_audit [--tenant-id N] [--clean [--dry-run]] [--batch-size N]`: find stored text
that breaks the rule of its column (`apps.core.text.STORED_TEXT`: titles, names, announcement
bodies, print sizes, debit references, client ids, ledger keys), written before the rule existed.

Reads every studio's rows in the audited system context (like `inventory_reconcile`): one pass per
table in id order, `--batch-size` rows per transaction (keyset, never a whole table in memory),
rather than one pass per studio, since some tables (ledger events) have no tenant index. Prints
one line per offending value (table, id, tenant, column, the rule's problem, the value's repr cut
to 80 characters) and, on stderr, progress per batch; then a summary.

`--clean` rewrites display text without the characters its rule refuses (`StoredTextRule.clean`),
each change guarded by the value read (a row changed meanwhile is left) and written to the audit
log (`stored_text.clean`, old and new value) in the batch's transaction. It never rewrites an
identifier or key (clients send them back to match), a product's or price's print size (it pairs
the product with its price: one side rewritten alone would reprice the product or unprice it),
nor a row of an append-only table (ledger events: a debit's reference), and leaves a value that
would become empty where its rule needs one, or that would collide with another row's under a
unique constraint: those are reported.
`--dry-run` shows what `--clean` would change and writes nothing.

Exit status 1 when offending values remain (after `--clean`: those it left), 0 otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, models, transaction

from apps.core.text import STORED_TEXT, StoredTextColumn
from apps.tenancy.context import system_context
from apps.tenancy.services import audit_record

REASON = "text audit"
AUDIT_ACTION = "stored_text.clean"
REPR_MAX = 80


@dataclass
class _Tally:
    scanned: int = 0
    found: int = 0
    cleaned: int = 0
    left: int = 0
    by_tenant: Counter[int] = field(default_factory=Counter)


def _cut(text: str) -> str:
    return text if len(text) <= REPR_MAX else text[: REPR_MAX - 1] + "…"


def _columns_by_model() -> dict[str, list[StoredTextColumn]]:
    grouped: dict[str, list[StoredTextColumn]] = {}
    for column in STORED_TEXT:
        grouped.setdefault(column.model, []).append(column)
    return grouped


class Command(BaseCommand):
    help = (
        "Report stored text that breaks its column's rule (control characters, text-direction overrides); "
        "--clean rewrites display text without them (audited). Exit 1 while any remains."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant-id", type=int, default=None, help="only this studio's rows")
        parser.add_argument(
            "--clean", action="store_true", help="rewrite display text without the refused characters (audited)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="with --clean: show what would change; write nothing"
        )
        parser.add_argument("--batch-size", type=int, default=1000, help="rows read per transaction (default 1000)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"] and not options["clean"]:
            raise CommandError("--dry-run goes with --clean (an audit alone writes nothing).")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.clean = bool(options["clean"])
        self.dry_run = bool(options["dry_run"])
        self.tenant_id: int | None = options["tenant_id"]
        self.batch_size = int(options["batch_size"])
        tally = _Tally()
        for label, columns in _columns_by_model().items():
            self._scan(apps.get_model(label), columns, tally)
        remaining = tally.left if self.clean and not self.dry_run else tally.found
        verb = "would clean" if self.dry_run else "cleaned"
        tenants = ", ".join(f"tenant {t}: {n}" for t, n in sorted(tally.by_tenant.items())) or "none"
        summary = (
            f"text_audit: {tally.scanned} row(s) of {len(STORED_TEXT)} column(s) scanned; "
            f"{tally.found} value(s) break their rule ({tenants})"
        )
        if self.clean:
            summary += f"; {verb} {tally.cleaned}, left {tally.left}"
        self.stdout.write(self.style.ERROR(summary) if remaining else self.style.SUCCESS(summary))
        if remaining:
            raise SystemExit(1)

    def _scan(self, model: type[models.Model], columns: list[StoredTextColumn], tally: _Tally) -> None:
        """Walk the table in id order, one transaction per batch."""
        table = model._meta.db_table
        # The organization is its own tenant; every other model here is tenant-owned.
        tenant_field = "tenant_id" if any(f.name == "tenant" for f in model._meta.fields) else "id"
        rows = model._base_manager.order_by("pk")
        if self.tenant_id is not None:
            rows = rows.filter(**{tenant_field: self.tenant_id})
        fields = [column.field for column in columns]
        after: Any = None
        scanned = 0
        while True:
            with system_context(REASON), transaction.atomic():
                page = rows if after is None else rows.filter(pk__gt=after)
                batch = list(page.values_list("pk", tenant_field, *fields)[: self.batch_size])
                for pk, tenant_id, *values in batch:
                    for column, value in zip(columns, values, strict=True):
                        self._check(model, column, pk=pk, tenant_id=tenant_id, value=value, tally=tally)
            scanned += len(batch)
            self.stderr.write(f"{table}: {scanned} row(s) scanned")
            if len(batch) < self.batch_size:
                break
            after = batch[-1][0]
        tally.scanned += scanned

    def _check(
        self, model: type[models.Model], column: StoredTextColumn, *, pk: Any, tenant_id: int, value: str, tally: _Tally
    ) -> None:
        """Report one value its rule refuses and, with --clean, rewrite it (in the batch's transaction)."""
        problem = column.rule.problem(value)
        if not problem:
            return
        tally.found += 1
        tally.by_tenant[tenant_id] += 1
        outcome = self._clean(model, column, pk=pk, tenant_id=tenant_id, value=value) if self.clean else ""
        if outcome.startswith(("cleaned", "would clean")):
            tally.cleaned += 1
        else:
            tally.left += 1
        line = f"{model._meta.db_table} id={pk} tenant={tenant_id} {column.field}: {problem} {_cut(repr(value))}"
        self.stdout.write(f"{line} -> {outcome}" if outcome else line)

    def _clean(
        self, model: type[models.Model], column: StoredTextColumn, *, pk: Any, tenant_id: int, value: str
    ) -> str:
        """What --clean did (or would do) with the value, as the report line's ending."""
        if column.rule.clean is None:
            article = "an" if column.rule.name[:1] in "aeiou" else "a"
            return f"left: {article} {column.rule.name}, reported only"
        if getattr(model, "APPEND_ONLY", False):
            return "left: append-only table, reported only"
        cleaned = column.rule.clean(value)
        if column.rule.problem(cleaned):
            return f"left: nothing the rule of a {column.rule.name} accepts remains"
        if self.dry_run:
            return f"would clean: {_cut(repr(cleaned))}"
        try:
            with transaction.atomic():  # a savepoint: a collision leaves the rest of the batch
                changed = model._base_manager.filter(pk=pk, **{column.field: value}).update(**{column.field: cleaned})
                if changed:
                    audit_record(
                        action=AUDIT_ACTION,
                        tenant_id=tenant_id,
                        actor_label="cli:text_audit",
                        target_type=model._meta.model_name or "",
                        target_id=str(pk),
                        data={"field": column.field, "rule": column.rule.name, "old": value, "new": cleaned},
                    )
        except IntegrityError:
            return f"left: {_cut(repr(cleaned))} would collide with another row"
        return f"cleaned: {_cut(repr(cleaned))}" if changed else "left: changed meanwhile"
