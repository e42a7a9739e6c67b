"""Every page is sent a Content-Security-Policy that allows scripts only from this origin, and no
page of ours (nor the API docs) needs an inline script to work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)


def directives(response: object) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    parts = (part.strip().split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


@pytest.mark.parametrize("path", ["/", "/studio/login/", "/admin/login/", "/api/docs/", "/s/no-such-studio/"])
def test_pages_allow_scripts_only_from_this_origin(path: str) -> None:
    response = Client().get(path)
    policy = directives(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_the_api_docs_start_swagger_ui_from_a_script_url_not_an_inline_script() -> None:
    page = Client().get("/api/docs/").content.decode()
    assert not INLINE_SCRIPT.search(page)
    script = re.search(r'<script src="(/api/docs/\?script=[^"]*)"', page)
    assert script, "the Swagger UI start-up script is not loaded from a URL"
    started = Client().get(script.group(1).replace("&amp;", "&"))
    assert started.status_code == 200 and b"SwaggerUIBundle" in started.content


@pytest.mark.parametrize("template", sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.html")))
def test_no_template_carries_an_inline_script_or_event_handler(template: str) -> None:
    source = (TEMPLATES / template).read_text()
    assert not INLINE_SCRIPT.search(source), f"{template}: an inline <script> is refused by the CSP"
    assert not EVENT_HANDLER.search(source), f"{template}: an on...= handler is refused by the CSP"
