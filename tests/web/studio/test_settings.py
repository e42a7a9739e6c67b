"""The studio's settings page (owners): renaming the studio, once per form, audited; the slug
(in every link already sent) stays; bad names are refused in the form, writing nothing."""

from __future__ import annotations

import pytest

from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog, Organization
from tests.web.studio.conftest import StudioPeople, form_nonce_on, signed_in, text

pytestmark = pytest.mark.django_db

URL = "/studio/settings/"


def renames(org: Organization) -> list[dict[str, str]]:
    with system_context("test: audit"):
        rows = AuditLog.objects.filter(action="organization.rename", target_id=str(org.pk)).order_by("id")
        return [row.data for row in rows]


def test_an_owner_renames_the_studio_once_per_form_and_the_shop_shows_it(studio: StudioPeople) -> None:
    # given: the settings page, linked from the studio's navigation
    owner = signed_in(studio.owner)
    assert f'href="{URL}"' in text(owner.get("/studio/"))
    page = owner.get(URL)
    assert f'value="{studio.org.name}"' in text(page)
    form = {"nonce": form_nonce_on(page, URL), "name": "  Lakeside Photo Co.  "}
    # when: the form is sent twice (a double click)
    first, second = owner.post(URL, form), owner.post(URL, form)
    # then: one rename, audited with the old and new name; the slug stays; the shop shows it
    assert first.status_code == second.status_code == 303
    org = Organization.objects.get(pk=studio.org.pk)
    assert (org.name, org.slug) == ("Lakeside Photo Co.", studio.org.slug)
    assert renames(org) == [{"from": studio.org.name, "to": "Lakeside Photo Co."}]
    assert "The studio is now called “Lakeside Photo Co.”." in text(owner.get(first["Location"]))
    assert "Lakeside Photo Co." in text(signed_in(studio.owner).get(f"/s/{org.slug}/"))


@pytest.mark.parametrize("name", ["", "   ", "Lake\nside", "Lake\u202eside", "x" * 201])
def test_a_bad_name_is_refused_in_the_form_and_writes_nothing(studio: StudioPeople, name: str) -> None:
    owner = signed_in(studio.owner)
    page = owner.get(URL)
    response = owner.post(URL, {"nonce": form_nonce_on(page, URL), "name": name})
    assert response.status_code == 400
    assert Organization.objects.get(pk=studio.org.pk).name == studio.org.name and renames(studio.org) == []


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_only_owners_change_settings(studio: StudioPeople, role: str) -> None:
    member = signed_in(getattr(studio, role))
    assert f'href="{URL}"' not in text(member.get("/studio/"))
    assert member.get(URL).status_code == 403
    assert member.post(URL, {"nonce": "n", "name": "Taken Over"}).status_code == 403
    assert Organization.objects.get(pk=studio.org.pk).name == studio.org.name
