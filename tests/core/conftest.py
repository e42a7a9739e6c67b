"""The published OpenAPI document, as an integrator downloads it (one request per test module)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

SCHEMA_PATH = "/api/schema/?format=json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    response = Client().get(SCHEMA_PATH)
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema
