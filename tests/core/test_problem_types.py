"""A problem's `type` names one kind of problem, and resolves to a page about it (RFC 9457).

* Field validation is one type, `/problems/validation-error`, with field `errors`, whether a
  serializer refused the field ("Test Race!" is not a slug) or a service did (a reserved slug, an
  access-code event without a code).
* Every type the code can emit has a page at its `type` URI (title, when it happens, what to do),
  made from the registry in `apps.core.problems`: this test finds the types in the code itself
  (every `DomainError` subclass, every slug given to `problem_body` / `problem_response` /
  `problem_page_or_json`, the handler's DRF types) and opens each page; and a web process, which
  loads the URL map before serving a page, has every `DomainError` subclass in its registry.
* The pages are public, for integrators: one slug has one title, and no page shows the code's own
  names (a setting, an identifier, a module path, a class, a call, a stray backtick).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils.html import escape

from apps.catalog.models import RESERVED_EVENT_SLUGS, Event
from apps.core.problems import (
    DRF_PROBLEM_TYPES,
    REQUEST_FAILED,
    VALIDATION_ERROR,
    DomainError,
    InvalidInput,
    problem_exception_handler,
    problem_types,
)
from apps.tenancy.context import tenant_context
from tests.fixtures import TenantBundle

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
PROBLEM_HELPERS = {"problem_body", "problem_response", "problem_page_or_json"}


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted([*(ROOT / "apps").rglob("*.py"), *(ROOT / "config").rglob("*.py")]):
        if "migrations" not in path.parts:
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield module, ast.parse(path.read_text(), filename=str(path))


def _domain_error_classes() -> list[tuple[str, str]]:
    """(module, class name) of every class deriving from DomainError, read from the source."""
    bases: dict[str, set[str]] = {}
    where: dict[str, set[str]] = {}
    for module, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names = {
                    base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases
                }
                bases.setdefault(node.name, set()).update(names)
                where.setdefault(node.name, set()).add(module)

    def derives(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == "DomainError":
            return True
        return name not in seen and any(derives(base, seen | {name}) for base in bases.get(name, ()))

    return sorted((module, name) for name in bases if name != "DomainError" and derives(name) for module in where[name])


def _literal_slugs() -> dict[str, str]:
    """Every slug given to the problem helpers as a literal, with where; a slug that is neither a
    literal nor a type's or error's `.slug` fails (this test could not tell what it emits)."""
    found: dict[str, str] = {}
    unknown: list[str] = []
    for module, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in PROBLEM_HELPERS:
                continue
            for keyword in node.keywords:
                if keyword.arg != "slug":
                    continue
                value = keyword.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.setdefault(value.value, f"{module}:{node.lineno}")
                elif isinstance(value, ast.Attribute) and value.attr == "slug":
                    pass  # a DomainError's or a registered ProblemType's
                elif not (module == "apps.core.problems" and isinstance(value, ast.Name) and value.id == "slug"):
                    unknown.append(f"{module}:{node.lineno}: slug={ast.unparse(value)}")
    assert unknown == []
    return found


def emitted_types() -> dict[str, str]:
    """Every problem type slug the code can put in a `type`, with where it comes from."""
    emitted = {slug: f"literal at {where}" for slug, where in _literal_slugs().items()}
    for problem in [*DRF_PROBLEM_TYPES.values(), REQUEST_FAILED]:
        emitted.setdefault(problem.slug, "problem_exception_handler")
    for module, name in _domain_error_classes():
        error = getattr(importlib.import_module(module), name)
        emitted.setdefault(error.slug, f"{module}.{name}")
    return emitted


# --- one type for field validation ------------------------------------------------------------


def _event_count(tenant: TenantBundle) -> int:
    with tenant_context(tenant.org.pk):
        return Event.objects.count()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"slug": "Test Race!"}, "slug", id="not a slug (the serializer)"),
        pytest.param({"slug": RESERVED_EVENT_SLUGS[0].upper()}, "slug", id="a reserved slug (the service)"),
        pytest.param({"visibility": "access_code"}, "access_code", id="no access code (the service)"),
    ],
)
def test_field_validation_is_one_problem_type_whoever_checks_it(
    tenant_a: TenantBundle, fields: dict[str, str], field: str
) -> None:
    # given: an event body with one field wrong
    body = {"title": "Test Race", "date": "2026-06-01", "slug": "test-race", **fields}
    before = _event_count(tenant_a)
    # when: it is posted
    response = tenant_a.client().post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    # then: a 400 validation-error problem naming the field, and nothing written
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["title"], problem["status"]) == (
        "/problems/validation-error",
        "Invalid input",
        400,
    )
    assert {"type", "title", "status", "detail", "errors"} <= set(problem)
    assert list(problem["errors"]) == [field] and all(problem["errors"][field])
    assert _event_count(tenant_a) == before
    # and its type is a page about it
    page = Client().get(problem["type"])
    assert page.status_code == 200
    assert "errors" in page.content.decode()


def test_a_validation_error_raised_without_field_errors_still_has_errors() -> None:
    # when: a service refuses input as a whole, naming no field
    response = problem_exception_handler(InvalidInput("Give at least one field to change."), {})
    # then: the body has the same shape as a serializer's, the sentence under non_field_errors
    assert response is not None and response.data is not None
    assert response.data["type"] == VALIDATION_ERROR.uri
    assert response.data["errors"] == {"non_field_errors": ["Give at least one field to change."]}


# --- every type has a page --------------------------------------------------------------------


def test_every_problem_type_the_code_can_emit_has_a_page(client: Client) -> None:
    emitted = emitted_types()
    assert {"validation-error", "not-authenticated", "checkout-not-found", "sandbox-unavailable"} <= set(emitted)
    missing = []
    for slug, origin in sorted(emitted.items()):
        page = client.get(f"/problems/{slug}")
        if page.status_code != 200:
            missing.append(f"/problems/{slug} ({origin}): {page.status_code}")
            continue
        assert page["Content-Type"].startswith("text/html")
        text = page.content.decode()
        problem = problem_types()[slug]
        assert problem.when and problem.what_to_do, slug
        assert f"<h1>{escape(problem.title)}</h1>" in text
        assert "When it happens" in text and "What to do" in text
    assert missing == []


def test_a_domain_error_has_the_title_of_its_type() -> None:
    # One type, one title: an error reusing a type's slug (the shop's photo-not-found, the
    # catalog's permission-denied) says it the same way.
    differ = []
    for module, name in _domain_error_classes():
        error: type[DomainError] = getattr(importlib.import_module(module), name)
        if problem_types()[error.slug].title != error.title:
            differ.append(f"{module}.{name}: {error.title!r}, not {problem_types()[error.slug].title!r}")
    assert differ == []


# --- the pages are written for integrators ----------------------------------------------------

# What the code calls things, which an integrator reading a page cannot look up.
INTERNAL_LOOKING = {
    "a setting": re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"),
    "a snake_case name": re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b"),
    "a dotted path": re.compile(r"\b[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+\b"),
    "a class name": re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b"),
    "a call": re.compile(r"\w+\(\)"),
    "a backtick": re.compile(r"`"),
    "a word of the code": re.compile(
        r"\b(?:tenants?|RLS|outbox|Redis|Celery|Postgres(?:QL)?|bigint|adapters?|rows?|mixins?|enums?)\b", re.I
    ),
}
# Names an integrator sends or reads in the API itself, and proper names.
API_NAMES = {
    *("request_id", "non_field_errors", "payment_url", "expected_currency", "restock_prints", "shopper_ip"),
    *("PayPal", "WebP"),
}


def _page_text(html: str) -> str:
    main = html[html.index("<main>") : html.index("</main>")]
    return unescape(re.sub(r"<[^>]+>", " ", main))


def test_no_problem_page_shows_the_codes_own_names(client: Client) -> None:
    # given: every page, as an integrator reads it (the words of <main>, code included)
    found = []
    for slug in problem_types():
        page = client.get(f"/problems/{slug}")
        assert page.status_code == 200, slug
        text = _page_text(page.content.decode())
        # then: no setting, identifier, module path, class, call or leftover backtick in it
        for kind, pattern in INTERNAL_LOOKING.items():
            found += [
                f"/problems/{slug}: {kind} {token!r}" for token in pattern.findall(text) if token not in API_NAMES
            ]
    assert found == []


def test_the_check_of_the_pages_finds_what_it_looks_for() -> None:
    # The patterns above catch what the engineers' docstrings used to put on the pages.
    for kind, sample in [
        ("a setting", "past STOCK_MAX_UNITS."),
        ("a snake_case name", "(`checkout_ids`, soonest first)"),
        ("a dotted path", "see apps.core.locks"),
        ("a class name", "under way (`RefundAlreadyRequested`)"),
        ("a call", "`extend()` found the key gone"),
        ("a backtick", "an unpaired ` mark"),
        ("a word of the code", "the tenant's outbox row"),
    ]:
        assert INTERNAL_LOOKING[kind].search(_page_text(f"<main>{escape(sample)}</main>")), kind


def test_a_web_process_knows_every_domain_error_once_its_url_map_is_loaded() -> None:
    # given: a fresh interpreter, as a web process starts: Django set up, the URL map loaded
    program = (
        "import django, json; django.setup(); "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "from apps.core.problems import problem_types; print(json.dumps(sorted(problem_types())))"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, check=True
    )
    served = set(json.loads(run.stdout.strip().splitlines()[-1]))
    # then: every DomainError subclass's type is in its registry
    wanted = {getattr(importlib.import_module(module), name).slug for module, name in _domain_error_classes()}
    assert wanted - served == set()


def test_the_list_links_every_type_and_an_unknown_type_is_404(client: Client) -> None:
    listing = client.get("/problems/")
    assert listing.status_code == 200
    for problem in problem_types().values():
        assert f'href="{problem.uri}"' in listing.content.decode()
    unknown = client.get("/problems/no-such-type")
    assert unknown.status_code == 404


def test_invalid_input_is_no_type_of_its_own(client: Client) -> None:
    # The service's field validation used to be `/problems/invalid-input`: no code emits it now.
    assert "invalid-input" not in emitted_types()
    assert client.get("/problems/invalid-input").status_code == 404
