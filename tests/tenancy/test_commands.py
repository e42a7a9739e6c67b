"""tenant_create and seed_demo."""

import json
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.catalog.models import Event, Photo, Product, ProductKind
from apps.tenancy.context import tenant_context
from apps.tenancy.management.commands.seed_demo import DEMO_RUNNER_AT
from apps.tenancy.models import Organization
from tests.factories.commerce import SHIPPING_JSON

pytestmark = pytest.mark.django_db(transaction=True)


def test_tenant_create_prints_json_with_a_working_key(client):
    out = StringIO()
    call_command("tenant_create", "--slug", "acme", "--name", "Acme Photo", stdout=out)
    payload = json.loads(out.getvalue())
    assert set(payload) == {"tenant_id", "slug", "api_key"} and payload["slug"] == "acme"
    response = client.get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION=f"Bearer {payload['api_key']}")
    assert response.json()["tenant_id"] == payload["tenant_id"]


def test_tenant_create_refuses_duplicate_slug_clearly():
    call_command("tenant_create", "--slug", "dup", "--name", "One", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("tenant_create", "--slug", "dup", "--name", "Two", stdout=StringIO())
    assert Organization.objects.filter(slug="dup").count() == 1


def test_seed_demo_is_repeatable_and_logins_work(client):
    payloads = []
    for _ in range(2):
        out = StringIO()
        call_command("seed_demo", "--json", stdout=out)
        payloads.append(json.loads(out.getvalue()))
    first, payload = payloads
    # the demo catalog is made once: the second run finds the same event and products
    assert first["catalog"]["created"] is True and payload["catalog"]["created"] is False
    assert {k: v for k, v in first["catalog"].items() if k != "created"} == {
        k: v for k, v in payload["catalog"].items() if k != "created"
    }
    assert len(payload["catalog"]["download_product_ids"]) == 6
    assert {login["username"] for login in payload["logins"]} == {"admin", "owner", "photographer", "shopper"}
    assert client.login(username="owner", password="darkroom-demo")
    whoami = client.get("/api/v1/tenancy/whoami")
    assert whoami.status_code == 200 and whoami.json()["role"] == "owner"


def test_seed_demo_catalog_can_be_bought_through_the_api(client):
    # given: the demo studio, its storefront key and its catalog
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    demo = json.loads(out.getvalue())
    catalog = demo["catalog"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {demo['api_key']}"}
    # when: the storefront lists the event's products and buys the print and a download
    products = client.get(f"/api/v1/events/{catalog['event_id']}/products", **auth)
    created = client.post(
        "/api/v1/checkouts",
        data=json.dumps(
            {
                "email": "shopper@demo.darkroom.test",
                "provider": "sandbox",
                "lines": [{"product": catalog["print_product_id"]}, {"product": catalog["download_product_ids"][0]}],
                "shipping": SHIPPING_JSON,  # prints are shipped
            }
        ),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        **auth,
    )
    # then: every product is listed with its price, and the checkout is taken
    assert products.status_code == 200, products.content
    listed = {p["id"] for p in products.json()["results"]}
    assert listed == {*catalog["download_product_ids"], catalog["print_product_id"], catalog["bulk_product_id"]}
    assert created.status_code == 201, created.content
    assert [line["kind"] for line in created.json()["lines"]] == ["print", "download"]


def test_seed_demo_reports_what_is_left_when_an_operator_removed_a_demo_product():
    # given: the demo catalog, then its bulk product removed by an operator
    call_command("seed_demo", "--json", stdout=StringIO())
    organization = Organization.objects.get(slug="demo-studio")
    with tenant_context(organization.pk):
        Product.objects.filter(tenant=organization, kind=ProductKind.BULK).delete()
    # when: the demo is seeded again
    out = StringIO()
    call_command("seed_demo", stdout=out)
    # then: no crash; the print is still offered, the bulk product is not mentioned
    text = out.getvalue()
    assert "already there" in text and "A4 print" in text and "all my photos" not in text


def test_seed_demo_sells_a_print_of_a_photo_the_demo_selfie_finds():
    # given / when: the demo studio seeded
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    demo = json.loads(out.getvalue())
    catalog = demo["catalog"]
    with tenant_context(demo["tenant_id"]):
        photo_ids = list(Photo.objects.filter(event_id=catalog["event_id"]).order_by("pk").values_list("pk", flat=True))
        print_photo = Product.objects.get(pk=catalog["print_product_id"]).photo_id
        sells_new_photos = Event.objects.get(pk=catalog["event_id"]).downloads_for_new_photos
    # then: its print is of a photo of the demo runner (which `selfie.jpg` finds: test_demo_find_me.py),
    # so a shopper can find themself by selfie and buy a print of that photo; and photos the studio
    # uploads to the demo event later are sold as downloads too, as its others are
    assert print_photo in [photo_ids[number - 1] for number in DEMO_RUNNER_AT]
    assert sells_new_photos is True
