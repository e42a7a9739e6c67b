"""A request line over the web server's limit is a 414, documented in the schema and README.

gunicorn refuses a request line (method, path, query string) longer than `limit_request_line`
with its own `414 URI Too Long` text/html page, before Django: that answer cannot be a problem
document. Found by fuzzing the running API with schemathesis (long query strings on list
endpoints): the schema did not list it. The limit stays gunicorn's 4,094 bytes, stated in
`config/gunicorn_conf.py`: the longest request line a valid call of this API needs is far shorter
(a 254-character e-mail in a query, percent-encoded, is under 800 bytes).
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from gunicorn.config import Config

REPO = Path(__file__).resolve().parents[2]
RESPONSE_REF = "#/components/responses/RequestLineTooLong"


def gunicorn_limit() -> int:
    """`limit_request_line` as gunicorn applies it from the project's configuration file."""
    config = Config()
    for name, value in runpy.run_path(str(REPO / "config" / "gunicorn_conf.py")).items():
        if name in config.settings:
            config.set(name, value)
    limit: int = config.limit_request_line
    return limit


def test_the_configured_limit_is_stated_and_leaves_room_for_every_valid_query() -> None:
    assert "limit_request_line" in runpy.run_path(str(REPO / "config" / "gunicorn_conf.py"))
    assert gunicorn_limit() == 4094


def test_every_operation_documents_the_414_of_a_request_line_too_long(document: dict[str, Any]) -> None:
    operations = [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert operations
    for method, path, operation in operations:
        assert operation["responses"].get("414") == {"$ref": RESPONSE_REF}, (method, path)


def test_the_414_response_says_what_a_client_gets(document: dict[str, Any]) -> None:
    response = document["components"]["responses"]["RequestLineTooLong"]
    assert f"{gunicorn_limit():,} bytes" in response["description"]
    assert "not a problem document" in response["description"]
    assert response["content"] == {"text/html": {"schema": {"type": "string"}}}


def test_the_readme_says_what_a_client_gets() -> None:
    readme = (REPO / "README.md").read_text()
    assert (
        f"414 URI Too Long` (text/html, not a problem document) for a request line over {gunicorn_limit():,} bytes"
        in readme
    )
