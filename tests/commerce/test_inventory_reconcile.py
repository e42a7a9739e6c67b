"""`manage.py inventory_reconcile` as an operator reads it (README runbook "Stock drift"): each SKU
listed by its SKU, studio and print (photo, size, event), with what drift means, and the
runbook's correction, run as written, balancing the books again."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from apps.commerce.batched import TOPIC_RESERVATION_DECIDED, inventory_sku_drain
from tests.commerce.helpers import buy_print, drain_outbox
from tests.factories.commerce import Shop

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def _batched(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "batched"


def reconcile(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("inventory_reconcile", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def sold_three_then_two_units_lost(shop: Shop) -> None:
    """3 of the print's 10 units sold (confirmed), then 2 taken off its stock behind the code's
    back (the owner role, as a hand-written UPDATE would): stock 5, drift 2."""
    for n in range(3):
        buy_print(shop, n)
    inventory_sku_drain(tenant_id=shop.org.pk, product_id=shop.print.pk)
    drain_outbox(topics={TOPIC_RESERVATION_DECIDED})
    with connections["owner"].cursor() as cursor:
        cursor.execute(
            "BEGIN; SELECT set_config('app.system_context', 'on', true);"
            f" UPDATE catalog_stock SET quantity = quantity - 2 WHERE id = {int(shop.stock.pk)}; COMMIT;"
        )


def test_a_drifting_sku_is_listed_by_its_sku_studio_and_print(shop_a: Shop) -> None:
    # given: a print whose books no longer balance
    sold_three_then_two_units_lost(shop_a)
    # when: the operator runs the command
    code, output = reconcile()
    # then: it exits 1 and lists the SKU as the studio knows it: SKU, studio, the print (size,
    # photo, event), the ids the next step needs, and the figures
    assert code == 1
    lines = output.splitlines()
    assert lines[0].split() == [
        "studio",
        "SKU",
        "stock",
        "confirmed",
        "initial",
        "drift",
        "pending",
        "oldest",
        "print",
    ]
    row = next(line for line in lines if shop_a.print.sku in line)
    assert row.split()[:8] == [shop_a.org.slug, shop_a.print.sku, "5", "3", "10", "2", "0", "-"]
    assert row.endswith(
        f'Print A4 of photo {shop_a.photo.pk}, event "{shop_a.event.title}"'
        f" (studio id {shop_a.org.pk}, product id {shop_a.print.pk})"
    )
    # and: what the figure means, and where the next step is
    assert lines[-2:] == [
        "1 SKU(s) checked: 1 drifting",
        "drift = initial - (stock + confirmed). Above 0: units missing from sale; below 0: more units "
        'on sale than the print has. Next step: README, runbook "Stock drift".',
    ]
    # and: --json names them too
    code, output = reconcile("--json")
    [doc_row] = json.loads(output)["rows"]
    assert {k: doc_row[k] for k in ("sku", "studio", "product", "event", "drift", "tenant_id", "product_id")} == {
        "sku": shop_a.print.sku,
        "studio": shop_a.org.slug,
        "product": f"Print A4 of photo {shop_a.photo.pk}",
        "event": shop_a.event.title,
        "drift": 2,
        "tenant_id": shop_a.org.pk,
        "product_id": shop_a.print.pk,
    }


def runbook_correction() -> str:
    """The SQL the README's "Stock drift" runbook gives, as written there."""
    runbook = re.search(r"^  - \*Stock drift\*.*?(?=^  - \*)", README.read_text(), re.MULTILINE | re.DOTALL)
    assert runbook, "README has no Stock drift runbook"
    [sql] = [span for span in re.findall(r"`([^`]+)`", runbook.group(0).replace("\n    ", " ")) if "UPDATE" in span]
    return sql


def test_the_runbooks_correction_run_as_written_balances_the_books(shop_a: Shop) -> None:
    # given: a drifting print, and a sale still deciding (a pending reservation) meanwhile
    sold_three_then_two_units_lost(shop_a)
    buy_print(shop_a, 99)
    # when: the runbook's statement is run in psql as the owner, with the figures the command gave
    sql = (
        runbook_correction()
        .replace("<drift>", "2")
        .replace("<studio id>", str(shop_a.org.pk))
        .replace("<product id>", str(shop_a.print.pk))
    )
    with connections["owner"].cursor() as cursor:
        cursor.execute(sql)
    # and: the pending sale is decided afterwards
    inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    # then: the books balance, the sale counted
    code, output = reconcile("--json")
    assert code == 0 and json.loads(output)["drifting"] == 0
    assert shop_a.stock_quantity() == 10 - 4
