"""The alerting rules of config/prometheus: what they query is what /metrics exports, each alert
links a runbook of the README, promtool accepts them and their unit tests (alerts_test.yml)
pass, and docker-compose's Prometheus scrapes the web service with the web service's token.

How names are found in an expression: `promql_selectors` is a small PromQL tokenizer, not a
parser. promtool parses every expression with Prometheus's own parser (`promtool check rules`,
below), so the tokenizer only has to pick out, of an expression known to be valid, the vector
selectors (an identifier that is neither a keyword nor called like a function or aggregation,
with the label matchers in braces after it) and the label lists of by / without / on /
ignoring / group_left / group_right. A maintained parser exists on PyPI (`promql-parser`, Rust
bindings); it would be a compiled dependency for what 60 lines do here.

The scrape is the real one: the test client asks /metrics with the bearer token configured, the
collectors read this test's PostgreSQL database, Redis and Celery broker, after the test has
made the rows whose label values only appear once such a row exists (a failed webhook event, a
payout webhook naming no payout). `up{job=...}` is the only series the rules take from
Prometheus itself (one per scrape target, labelled job and instance).

promtool is Debian's (`/usr/bin/promtool`, package `prometheus`, `make promtool`): without it the
promtool tests fail when `CI` is set and are skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client

from tests.fixtures import require_executable

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
README = ROOT / "README.md"
PROMTOOL = "/usr/bin/promtool"
SEVERITIES = {"critical", "warning", "info"}
# Series Prometheus makes itself for each scrape target, with the target's labels.
TARGET_SERIES = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}


# --- the tokenizer --------------------------------------------------------------------------

_TOKENS = re.compile(
    r"""
    (?P<skip>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
  | (?P<colon>:)
    """,
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


@dataclass(frozen=True)
class Selector:
    name: str | None
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)


@dataclass(frozen=True)
class Names:
    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str]


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expr):
        match = _TOKENS.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position:]!r} in {expr!r}")
        position = match.end()
        if match.lastgroup != "skip":
            tokens.append((str(match.lastgroup), match.group()))
    return tokens


def _unquote(string: str) -> str:
    body = string[1:-1]
    return body if string[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def _matchers(tokens: list[tuple[str, str]], i: int) -> tuple[tuple[tuple[str, str, str], ...], int]:
    """The matchers of the braces opening at tokens[i], and the index after the closing one."""
    found, i = [], i + 1
    while tokens[i][1] != "}":
        if tokens[i][1] == ",":
            i += 1
            continue
        (_, label), (_, operator), (kind, value) = tokens[i : i + 3]
        assert kind == "string", f"matcher {label}{operator} has no string value"
        found.append((label, operator, _unquote(value)))
        i += 3
    return tuple(found), i + 1


def promql_selectors(expr: str) -> Names:
    """The vector selectors and grouping labels of a PromQL expression promtool accepted."""
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING:
            i += 1
            if following == "(":
                i += 1
                while tokens[i][1] != ")":
                    if tokens[i][0] == "ident":
                        grouping.add(tokens[i][1])
                    i += 1
                i += 1
        elif kind == "ident" and (text.lower() in _KEYWORDS or following == "(" or following in ("by", "without")):
            i += 1  # an operator keyword, a function, or an aggregation (sum by (x) (...))
        elif kind == "ident":
            matchers: tuple[tuple[str, str, str], ...] = ()
            i += 1
            if following == "{":
                matchers, i = _matchers(tokens, i)
            selectors.append(Selector(text, matchers))
        elif text == "{":
            matchers, i = _matchers(tokens, i)
            selectors.append(Selector(None, matchers))
        else:
            i += 1
    return Names(tuple(selectors), frozenset(grouping))


def test_the_tokenizer_finds_selectors_matchers_and_grouping_labels() -> None:
    # given: an expression with aggregations, functions, set operators, strings holding braces,
    # a range, an offset and a number in exponent form
    expr = """
        sum by (queue) (rate(tasks_total{queue=~"a|b", note="}{,"}[5m] offset 1h))  # a comment
          / on (queue) group_left (team) max without (instance) (workers{team!=''}) > 1e3
        and on () absent(up{job="web"}) or vector(1) unless {__name__="raw"}
    """
    # when
    names = promql_selectors(expr)
    # then: every selector with its matchers, in order, and the labels grouped by
    assert names.selectors == (
        Selector("tasks_total", (("queue", "=~", "a|b"), ("note", "=", "}{,"))),
        Selector("workers", (("team", "!=", ""),)),
        Selector("up", (("job", "=", "web"),)),
        Selector(None, (("__name__", "=", "raw"),)),
    )
    assert names.grouping_labels == {"queue", "team", "instance"}


# --- the rules, the scrape and the README ---------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _job_names() -> set[str]:
    return {job["job_name"] for job in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]}


def _operating_it() -> str:
    return README.read_text().split("\n## Operating it\n", 1)[1].split("\n## ", 1)[0]


def _runbooks() -> set[str]:
    """The runbook titles of README "Operating it": `  - *Title*` items of its **Runbooks** bullet
    (only there: the **Alerts** bullet names them too)."""
    runbooks = _operating_it().split("\n* **Runbooks**:\n", 1)[1].split("\n* ", 1)[0]
    return set(re.findall(r"^  - \*([^*]+)\*", runbooks, re.MULTILINE))


def _unknown(selectors: tuple[Selector, ...], exported: dict[str, dict[str, set[str]]]) -> list[str]:
    """What in `selectors` a scrape of /metrics does not export (an empty list when all is)."""
    problems = []
    for selector in selectors:
        if selector.name is None:
            problems.append(f"a selector without a metric name: {selector.matchers}")
            continue
        if selector.name in TARGET_SERIES:
            labels = {label: set() for label in TARGET_SERIES[selector.name]}
            labels["job"] = _job_names()
        elif selector.name in exported:
            labels = exported[selector.name]
        else:
            problems.append(f"{selector.name} is not exported by /metrics")
            continue
        for label, operator, value in selector.matchers:
            if label not in labels:
                problems.append(f"{selector.name} has no label {label!r} (it has {sorted(labels)})")
            elif operator == "=" and labels[label] and value not in labels[label]:
                problems.append(f"{selector.name}{{{label}={value!r}}}: /metrics exports {sorted(labels[label])}")
            elif operator == "=~" and labels[label] and not any(re.fullmatch(value, v) for v in labels[label]):
                problems.append(f"{selector.name}{{{label}=~{value!r}}} matches none of {sorted(labels[label])}")
    return problems


@pytest.mark.django_db(transaction=True)
def test_every_metric_and_label_the_rules_query_is_exported_by_metrics(exported) -> None:
    # given: the rules, and what a real scrape of /metrics exports
    rules = _rules()
    assert len(rules) >= 20
    problems = []
    for rule in rules:
        names = promql_selectors(rule["expr"])
        assert names.selectors, f"{rule['alert']}: no metric in {rule['expr']!r}"
        # then: each metric exists, with each label matched on (and each value matched by `=`
        # is one /metrics exports), and each label grouped by is on one of the rule's metrics
        problems += [f"{rule['alert']}: {problem}" for problem in _unknown(names.selectors, exported)]
        known = set().union(*(exported.get(s.name or "", {}).keys() for s in names.selectors)) | TARGET_LABELS
        problems += [f"{rule['alert']}: grouping label {label!r}" for label in names.grouping_labels - known]
        # and: each label the annotations print is one the alert can carry
        carried = known | set(rule.get("labels", {}))
        printed = set(re.findall(r"\$labels\.(\w+)", yaml.safe_dump(rule.get("annotations", {}))))
        problems += [f"{rule['alert']}: annotation prints $labels.{label}" for label in printed - carried]
    assert not problems, "\n".join(problems)


@pytest.mark.django_db(transaction=True)
def test_the_rule_tests_feed_series_that_metrics_exports(exported) -> None:
    # given: every input series of alerts_test.yml
    series = [
        entry["series"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for entry in case["input_series"]
    ]
    # then: each names a metric /metrics exports, with labels it has (values are scenarios), or
    # the target labels Prometheus adds to every series it scrapes
    problems = []
    for text in series:
        for selector in promql_selectors(text).selectors:
            unvalued = Selector(
                selector.name,
                tuple((label, "!=", "") for label, _, _ in selector.matchers if label not in TARGET_LABELS),
            )
            problems += [f"{text}: {problem}" for problem in _unknown((unvalued,), exported)]
    assert not problems, "\n".join(problems)


def test_every_alert_has_a_severity_and_annotations_naming_a_readme_runbook() -> None:
    runbooks = _runbooks()
    assert {"Projection lag growing", "Outbox backlog growing", "Refund failed"} <= runbooks
    operating_it = _operating_it()
    rules = _rules()
    assert len({rule["alert"] for rule in rules}) == len(rules), "alert names repeat"
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        match = re.fullmatch(r'README\.md#operating-it, runbook "([^"]+)"', rule["annotations"]["runbook"])
        assert match and match[1] in runbooks, f"{rule['alert']}: {rule['annotations']['runbook']}"
        assert f"`{rule['alert']}`" in operating_it, f"README 'Operating it' does not list {rule['alert']}"


# --- promtool -------------------------------------------------------------------------------


@pytest.fixture
def promtool() -> str:
    require_executable(PROMTOOL, "install Debian's promtool with `make promtool`")
    return PROMTOOL


def _run(*argv: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_the_rules_unit_tests_pass_and_show_every_alert_firing_and_not(promtool: str) -> None:
    # given: every alert has a case where it fires and one where it must not
    cases = [check for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for check in case["alert_rule_test"]]
    for rule in _rules():
        mine = [check for check in cases if check["alertname"] == rule["alert"]]
        assert any(check.get("exp_alerts") for check in mine), f"no case where {rule['alert']} fires"
        assert any(not check.get("exp_alerts") for check in mine), f"no case where {rule['alert']} stays quiet"
    # when / then: promtool runs them against the rules
    result = _run(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_scrape_config_with_its_rules(promtool: str, tmp_path: Path) -> None:
    # given: the config as it is (its token file exists only in the container: syntax only)
    syntax = _run(promtool, "check", "config", "--syntax-only", SCRAPE_CONFIG)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    # and: a copy whose token file exists, beside the rules it loads
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    token = tmp_path / "token"
    token.write_text("s3cret")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.yml").write_text(RULES.read_text())
    # when: promtool checks it in full
    result = _run(promtool, "check", "config", tmp_path / "prometheus.yml", cwd=tmp_path)
    # then: valid, and it loads the rules file with every rule
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


# --- docker-compose -------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _token_source(service: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """The service's env files (paths, in order; an entry is a path or `{path, required}`) and
    any DARKROOM_METRICS_TOKEN its `environment` sets over them."""
    env_files = service.get("env_file", [])
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    entries = [env_files] if isinstance(env_files, str) else env_files
    paths = tuple(entry if isinstance(entry, str) else entry["path"] for entry in entries)
    return (paths, environment.get("DARKROOM_METRICS_TOKEN"))


def test_compose_runs_a_pinned_prometheus_on_these_rules_scraping_the_web_service() -> None:
    # given: the compose file and the scrape config it mounts
    services = _compose()["services"]
    prometheus, web = services["prometheus"], services["web"]
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    # then: the official image, pinned to a 2.x release (the rule format, and promtool's here)
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", prometheus["image"]), prometheus["image"]
    # and: config/prometheus mounted where its --config.file points
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in prometheus["volumes"] if volume.startswith("./"))
    command = " ".join(prometheus["command"])
    assert f"--config.file={mounts['./config/prometheus']}/prometheus.yml" in command
    # and: the darkroom-web job scrapes the web service on the port its gunicorn binds
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "darkroom-web")
    [target] = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "web" and f"--bind 0.0.0.0:{port}" in web["command"]
    assert job["metrics_path"] == "/metrics"
    assert "web" in prometheus["depends_on"]


@pytest.mark.django_db
def test_compose_sends_the_token_the_web_service_checks(settings, tmp_path: Path) -> None:
    # given: the compose services and the token file prometheus.yml reads
    services = _compose()["services"]
    prometheus, web = services["prometheus"], services["web"]
    credentials_file = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"][0]["authorization"][
        "credentials_file"
    ]
    # then: both services take DARKROOM_METRICS_TOKEN from the same place, which defines it
    assert _token_source(prometheus) == _token_source(web)
    env_files, override = _token_source(web)
    assert override is not None or any(
        re.search(r"^DARKROOM_METRICS_TOKEN=", (ROOT / name).read_text(), re.MULTILINE)
        for name in env_files
        if (ROOT / name).exists()  # .env is optional; .env.example is in the repository
    )
    # when: Prometheus's entrypoint, up to starting Prometheus, runs with a token in its
    # environment (compose turns `$$` into `$`; the token file goes to a temporary path here)
    script = prometheus["command"][0].split("&& exec", 1)[0].replace("$$", "$")
    assert f"> {credentials_file}" in script
    token_file = tmp_path / "token"
    script = script.replace(credentials_file, shlex.quote(str(token_file)))
    token = "a-long-metrics-bearer-token"
    subprocess.run(["/bin/sh", "-c", script], env={**os.environ, "DARKROOM_METRICS_TOKEN": token}, check=True)
    # then: the file holds the token, and what Prometheus sends from it (`Bearer <file content>`)
    # opens /metrics of a web service given the same token, and of one given another, it does not
    assert token_file.read_text() == token
    sent = f"Bearer {token_file.read_text().strip()}"
    settings.METRICS_BEARER_TOKEN = token
    assert Client().get("/metrics", HTTP_AUTHORIZATION=sent).status_code == 200
    settings.METRICS_BEARER_TOKEN = "another-long-metrics-token"
    assert Client().get("/metrics", HTTP_AUTHORIZATION=sent).status_code == 401
