"""`manage.py text_audit --clean` and print sizes. A print product is priced by the event's price row
of the same (kind, size) (`product_price`): a size is a key that pairs the two rows, not display
text. Rewriting one side alone reprices the product (another price has the cleaned size) or leaves
it without a price, so sizes are reported, never rewritten (real Postgres, runtime role, RLS)."""

from __future__ import annotations

import pytest

from apps.catalog.models import Price, Product, ProductKind
from apps.catalog.selectors import product_price
from apps.tenancy.context import system_context
from tests.core.test_text_audit import clean_audit_rows, findings, run
from tests.factories.catalog import EventFactory, PriceFactory, ProductFactory
from tests.factories.tenancy import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_clean_never_reprices_a_print_by_rewriting_its_size() -> None:
    # given: an event selling A4 prints at 10.00, and a size stored before the rule, "A4" with a
    # zero-width space, at 20.00, for which a product is on sale
    org = OrganizationFactory()
    event = EventFactory(tenant=org)
    a4 = PriceFactory(price_list__event=event, kind=ProductKind.PRINT, size="A4", amount_minor=1000)
    odd = PriceFactory(price_list=a4.price_list, kind=ProductKind.PRINT, size="A4\u200b", amount_minor=2000)
    product = ProductFactory(event=event, kind=ProductKind.PRINT, size="A4\u200b")
    assert product_price(tenant_id=org.pk, product_id=product.pk) == (2000, a4.currency)
    # when: an operator cleans stored text
    code, lines, _ = run("--clean")
    # then: the product still sells at 20.00 (before: its size became "A4", the 10.00 price's,
    # while that price's twin could not be renamed onto it)
    assert product_price(tenant_id=org.pk, product_id=product.pk) == (2000, a4.currency)
    with system_context("test: text audit"):
        assert Product.objects.get(pk=product.pk).size == "A4\u200b"
        assert Price.objects.get(pk=odd.pk).size == "A4\u200b"
    # and: both sizes are reported, said to be left, and nothing about them is audited as cleaned
    found = findings(lines)
    left = "-> left: a print size, reported only"
    assert found[("catalog_product", product.pk, "size")].endswith(left)
    assert found[("catalog_price", odd.pk, "size")].endswith(left)
    assert not [a for a in clean_audit_rows() if a.data["field"] == "size"]
    assert code == 1
