"""README.md's reference material names what the code has: each test reads one kind of reference
out of the README and fails naming every entry the code does not have.

* Configuration table: each variable is read from the environment (by config/settings, the
  entry points or the Procfile / Makefile), the setting it feeds exists, and a default written
  as a literal (`60`, `true`, empty) is the code's default where the code's is a literal too.
* Management commands (the table, and every `manage.py ...`): the command exists, and each
  `--option` written with it is one its parser (or a subcommand's) accepts.
* `darkroom_*` metric names: a real scrape of /metrics exports them (the alert rules' fixture).
* `make <target>`: the Makefile has the target.
* Celery task names (`payouts.batch_run`): a registered task or a beat entry.
* Repository paths in backticks (`apps/outbox/requeue.py`): they exist.
* URL paths of the tables and every `GET /...`-style endpoint: `django.urls.resolve` finds them.

The parsers are narrow on purpose: where the README writes something that looks like a
reference but is not one of these (a database role named like a metric, an outbox topic named
like a task, a provider's own API path), the parser leaves it out for a stated reason, so every
entry it does pick up is checked exactly.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import itertools
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import get_commands, load_command_class
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# --- reading the README ---------------------------------------------------------------------

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# An inline code span: backticks around text that may wrap onto the next line, never across a
# paragraph break.
_SPAN = re.compile(r"`((?:[^`\n]|\n(?!\n))+)`")


def _readme() -> str:
    return README.read_text()


def _prose(text: str) -> str:
    """The README without its fenced code blocks (their backticks would pair with the prose's)."""
    return _FENCE.sub("", text)


def _fenced_lines(text: str) -> list[str]:
    return [line for block in _FENCE.findall(text) for line in block.splitlines()[1:-1]]


def _spans(text: str) -> list[str]:
    return _SPAN.findall(_prose(text))


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _cells(line: str) -> tuple[str, ...]:
    """A table row's cells (`\\|` is a pipe inside a cell)."""
    return tuple(cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1])


def _tables(text: str) -> list[Table]:
    tables, lines = [], _prose(text).splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|(?:\s*-+\s*\|)+", lines[i + 1].strip()):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            tables.append(Table(_cells(line), tuple(rows)))
    return tables


def _table(text: str, first_column: str) -> Table:
    [table] = [table for table in _tables(text) if table.header[0] == first_column]
    return table


def _split(cell: str, separator: str) -> list[str]:
    """`cell` split at `separator` where it is outside backticks and parentheses."""
    parts, depth, ticked, start, i = [], 0, False, 0, 0
    while i < len(cell):
        char = cell[i]
        if char == "`":
            ticked = not ticked
        elif not ticked and char == "(":
            depth += 1
        elif not ticked and char == ")":
            depth -= 1
        elif not ticked and depth == 0 and cell.startswith(separator, i):
            parts.append(cell[start:i].strip())
            start = i + len(separator)
            i = start
            continue
        i += 1
    return [*parts, cell[start:].strip()]


# --- 1. the configuration table -------------------------------------------------------------

_NOT_LITERAL = object()  # a default the code computes (an f-string, a path, another setting)
_NO_DEFAULT = object()  # read without a default: required


@dataclass(frozen=True)
class EnvRead:
    """One place that reads an environment variable."""

    name: str
    path: str  # relative to the repository
    default: Any  # a Python value, _NOT_LITERAL or _NO_DEFAULT
    setting: str | None  # the module-level setting it is assigned to (settings modules)


# Settings modules for one environment: their defaults are that environment's, not the documented
# one (test.py's are the tests' own), unless no other place reads the variable.
_ENVIRONMENT_SETTINGS = ("config/settings/local.py", "config/settings/test.py", "config/settings/production.py")


def _literal(node: ast.expr | None, known: dict[str, Any] | None = None) -> Any:
    """The value of a literal default, with the arithmetic of `60 * 60 * 24 * 30` and f-strings
    of names `known` (the module's earlier settings whose defaults are literals, such as
    DATABASE_NAME in DATABASE_URL's); else _NOT_LITERAL."""
    if node is None:
        return _NO_DEFAULT
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
            elif (
                isinstance(part, ast.FormattedValue)
                and isinstance(part.value, ast.Name)
                and part.value.id in (known or {})
                and part.conversion == -1
                and part.format_spec is None
            ):
                parts.append(str((known or {})[part.value.id]))
            else:
                return _NOT_LITERAL
        return "".join(parts)
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(item) for item in node.elts]
        return _NOT_LITERAL if _NOT_LITERAL in items else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        return -value if isinstance(value, int | float) else _NOT_LITERAL
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left, right = _literal(node.left), _literal(node.right)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)):
            return _NOT_LITERAL
        operators = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b}
        operators |= {ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
        return operators[type(node.op)](left, right)
    return _NOT_LITERAL


def _python_reads(path: Path) -> Iterator[EnvRead]:
    """django-environ calls (`env(...)`, `env.int(...)`) and os.environ / os.getenv reads."""
    relative = str(path.relative_to(ROOT))
    known: dict[str, Any] = {}
    for statement in ast.parse(path.read_text()).body:
        setting = None
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        targets += [statement.target] if isinstance(statement, ast.AnnAssign) else []
        for target in targets:
            name = target.value if isinstance(target, ast.Subscript) else target
            if isinstance(name, ast.Name) and name.id.isupper():
                setting = name.id
        for node in ast.walk(statement):
            if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            call = ast.unparse(node.func)
            name = node.args[0].value
            if call == "env" or call.startswith("env."):
                default = _literal(next((kw.value for kw in node.keywords if kw.arg == "default"), None), known)
                yield EnvRead(name, relative, default, setting)
                if setting and getattr(statement, "value", None) is node and default not in (_NOT_LITERAL, _NO_DEFAULT):
                    known[setting] = default
            elif call in ("os.environ.get", "os.environ.setdefault", "os.getenv"):
                default = _literal(node.args[1] if len(node.args) > 1 else None)
                # `os.environ.get(NAME, "")` tells "unset" apart; it is no default (gunicorn_conf.py
                # refuses to start without PROMETHEUS_MULTIPROC_DIR).
                unset = call != "os.environ.setdefault" and default in ("", None)
                yield EnvRead(name, relative, _NO_DEFAULT if unset else default, setting)


# ${NAME}, ${NAME:-default} (a default may hold one nested ${...}); $${...} in a Makefile.
_SHELL_READ = re.compile(r"\$\{([A-Za-z_]\w*)(?::-((?:[^{}]|\{[^{}]*\})*))?\}")


def _shell_reads(path: Path) -> Iterator[EnvRead]:
    for match in _SHELL_READ.finditer(path.read_text()):
        default = match[2]
        value = _NO_DEFAULT if default is None else (_NOT_LITERAL if "$" in default else default)
        yield EnvRead(match[1], path.name, value, None)


def env_reads() -> dict[str, list[EnvRead]]:
    """Every environment variable the project reads, by name, with where and its default."""
    python = [*sorted((ROOT / "config").glob("**/*.py")), ROOT / "manage.py"]
    reads = [read for path in python for read in _python_reads(path)]
    reads += [read for name in ("Procfile", "Makefile") for read in _shell_reads(ROOT / name)]
    found: dict[str, list[EnvRead]] = {}
    for read in reads:
        found.setdefault(read.name, []).append(read)
    return found


@dataclass(frozen=True)
class Documented:
    name: str
    default: str | None  # the default cell's text for this variable; None when not its own


def _align(names: str, defaults: str, separators: tuple[str, ...] = (";", " / ", ",")) -> list[Documented]:
    """Pair each variable of a names cell with its part of the defaults cell, following the
    cells' separators: "`A` / `B`, `C`" with "`1` / `2`, `3`"; one default for all; or none
    when the defaults cell is shaped otherwise (prose)."""
    every = re.findall(r"`([A-Z][A-Z0-9_]*)`", names)
    for i, separator in enumerate(separators):
        name_parts, default_parts = _split(names, separator), _split(defaults, separator)
        if len(name_parts) == 1:
            continue
        if len(default_parts) == len(name_parts):
            return [
                d for n, v in zip(name_parts, default_parts, strict=True) for d in _align(n, v, separators[i + 1 :])
            ]
        return [Documented(name, defaults if len(default_parts) == 1 else None) for name in every]
    return [Documented(name, defaults) for name in every]


_EMPTY = object()  # the README's "empty"
_LITERAL_DEFAULT = re.compile(r"(?:`(?P<value>[^`]*)`|(?P<empty>empty))(?:\s*\((?P<note>[^()]*)\))?")


def _readme_literal(text: str) -> Any:
    """`60` → "60", empty → _EMPTY; prose (anything more than one literal and a parenthesis) → None."""
    match = _LITERAL_DEFAULT.fullmatch(text.strip())
    if match is None:
        return None
    return _EMPTY if match["empty"] else match["value"]


def _production_note(text: str) -> Any:
    """The literal of a "(production: `x`)" note, or None."""
    match = _LITERAL_DEFAULT.fullmatch(text.strip())
    note = match["note"] if match else None
    production = re.fullmatch(r"production: (?:`([^`]*)`|(empty))", note or "")
    if production is None:
        return None
    return _EMPTY if production[2] else production[1]


def _same(documented: Any, value: Any) -> bool:
    if documented is _EMPTY:
        return value in ("", [], None)
    if isinstance(value, bool):
        return documented.lower() in (("true", "on", "1") if value else ("false", "off", "0"))
    if isinstance(value, int | float):
        try:
            return float(documented.replace("_", "")) == float(value)
        except ValueError:
            return False
    if isinstance(value, list):
        return documented == ",".join(str(item) for item in value)
    return documented == value


def _default_problems(documented: Documented, reads: list[EnvRead]) -> list[str]:
    problems = []
    primary = [read for read in reads if read.path not in _ENVIRONMENT_SETTINGS]
    candidates = primary or [read for read in reads if read.path != "config/settings/test.py"]
    literal = _readme_literal(documented.default or "")
    if literal is not None:
        for read in candidates:
            if read.default not in (_NOT_LITERAL, _NO_DEFAULT) and not _same(literal, read.default):
                problems.append(
                    f"`{documented.name}`: README's default {documented.default!r}, {read.path}'s {read.default!r}"
                )
    production = _production_note(documented.default or "")
    if production is not None:
        for read in reads:
            if read.path == "config/settings/production.py" and read.default not in (_NOT_LITERAL, _NO_DEFAULT):
                if not _same(production, read.default):
                    problems.append(
                        f"`{documented.name}`: README's production default {production!r},"
                        f" production.py's {read.default!r}"
                    )
    return problems


def test_the_configuration_table_names_variables_the_code_reads_with_their_defaults() -> None:
    # given: the Configuration table's variables, each with its part of the default column
    table = _table(_readme(), "variable")
    documented = [d for row in table.rows for d in _align(row[0], row[1])]
    assert len(documented) >= 60, f"only {len(documented)} variables read from the table"
    reads = env_reads()
    problems = []
    for entry in documented:
        if entry.name not in reads:
            # then: each is read from the environment somewhere (a setting is not a variable)
            kind = "a setting, not an environment variable" if hasattr(django_settings, entry.name) else "read nowhere"
            problems.append(f"`{entry.name}`: {kind} (config/, manage.py, Procfile and Makefile read no such variable)")
            continue
        # and: what it feeds in the test settings exists there (base.py and test.py feed them)
        for read in reads[entry.name]:
            feeds_test_settings = read.path in ("config/settings/base.py", "config/settings/test.py")
            if feeds_test_settings and read.setting and not hasattr(django_settings, read.setting):
                problems.append(f"`{entry.name}` feeds settings.{read.setting}, which config.settings.test lacks")
        # and: a literal default is the code's
        problems += _default_problems(entry, reads[entry.name])
    assert not problems, "README's Configuration table does not match the code:\n" + "\n".join(problems)


def test_the_default_reader_tells_literals_from_prose() -> None:
    # the cases the table holds: two variables with two defaults, one default for several,
    # defaults with a note, prose, and groups within groups
    assert _align("`A` / `B`", "`true` / `2592000` (30 days)") == [
        Documented("A", "`true`"),
        Documented("B", "`2592000` (30 days)"),
    ]
    assert _align("`A`, `B`", "`false`") == [Documented("A", "`false`"), Documented("B", "`false`")]
    assert _align("`A`; `B`, `C`", "the console (local), SMTP; `1`, empty")[1:] == [
        Documented("B", "`1`"),
        Documented("C", "empty"),
    ]
    assert _align("`A`, `B`, `C`", "Redis db 0, 1") == [Documented(n, None) for n in "ABC"]
    assert _readme_literal("`2592000` (30 days)") == "2592000"
    assert _readme_literal("`true` in local") is None
    assert _readme_literal("empty (open)") is _EMPTY
    assert _production_note("`https://a` (production: `https://b`)") == "https://b"
    assert _same("1048576", 1_048_576) and _same("60", 60.0) and _same("true", True) and _same(_EMPTY, [])
    assert not _same("0.01", 0.1) and not _same("false", True) and not _same("INFO", "DEBUG")


# --- 2. management commands -----------------------------------------------------------------

_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _command_mentions(text: str) -> list[tuple[str, str]]:
    """(command, what follows it) for each entry of the commands table and each `manage.py ...`."""
    mentions = []
    for row in _table(text, "command").rows:
        mentions += [(span.split()[0], span) for span in _SPAN.findall(row[0])]
    for span in _spans(text):
        for match in re.finditer(r"manage\.py\s+([a-z_]+)", span):
            mentions.append((match[1], span[match.end() :]))
    return mentions


def _accepted_options(parser: argparse.ArgumentParser) -> set[str]:
    options = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                options |= _accepted_options(subparser)
    return options


def test_every_management_command_and_option_the_readme_names_exists() -> None:
    # given: the commands table and every `manage.py <command> ...` of the README
    mentions = _command_mentions(_readme())
    assert len(mentions) >= 30
    commands = get_commands()
    problems = []
    for name, rest in mentions:
        # then: the command exists
        if name not in commands:
            problems.append(f"`{name}`: no such management command")
            continue
        # and: each option written with it is one its parser accepts
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        accepted = _accepted_options(parser)
        problems += [
            f"`{name} {option}`: {name} has no option {option}"
            for option in _OPTION.findall(rest)
            if option not in accepted
        ]
    assert not problems, "README names commands or options that do not exist:\n" + "\n".join(sorted(set(problems)))


# --- 3. metrics -----------------------------------------------------------------------------

# Series a family is exported as: a counter `x` as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`.
_SAMPLE_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")


@pytest.mark.django_db(transaction=True)
def test_every_darkroom_metric_the_readme_names_is_exported(exported: dict[str, dict[str, set[str]]]) -> None:
    # given: every darkroom_* name of the README, but the database roles and databases named
    # alike (settings.DATABASES' users, darkroom_app and darkroom_owner; the Makefile's
    # `BENCH_DB_NAME ?= darkroom_bench`) and the return URL's query parameter (darkroom_return),
    # which share the prefix and are no metrics
    from apps.payments.providers.returns import RETURN_PARAMETER

    roles = {database["USER"] for database in django_settings.DATABASES.values()}
    makefile = (ROOT / "Makefile").read_text()
    databases = set(re.findall(r"^\w*DB_NAME\s*[?:]?=\s*(darkroom_\w+)\s*$", makefile, re.MULTILINE))
    names = set(re.findall(r"\bdarkroom_[a-z0-9_]+\b", _readme())) - roles - databases - {RETURN_PARAMETER}
    assert len(names) >= 20
    # then: a real scrape of /metrics exports each, as itself or as its family's series
    missing = sorted(name for name in names if not any(name + suffix in exported for suffix in _SAMPLE_SUFFIXES))
    assert not missing, "README names metrics /metrics does not export:\n" + "\n".join(missing)


# --- 4. make targets ------------------------------------------------------------------------


def _make_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"([^\s#:=][^:=]*?)\s*:(?!=)", line)
        if match and not line.startswith("\t"):
            targets |= set(match[1].split())
    return targets


def test_every_make_target_the_readme_names_exists() -> None:
    # given: `make <target>` in the README's code spans and in its code blocks
    text = _readme()
    named = {m[1] for span in _spans(text) for m in re.finditer(r"(?:^|&&\s*)make\s+([a-z][\w-]*)", span)}
    named |= {m[1] for line in _fenced_lines(text) if (m := re.match(r"\s*make\s+([a-z][\w-]*)", line))}
    assert {"run", "test", "bench"} <= named
    # then: the Makefile has each
    missing = sorted(named - _make_targets())
    assert not missing, "README names make targets the Makefile lacks:\n" + "\n".join(f"make {t}" for t in missing)


# --- 5. Celery tasks ------------------------------------------------------------------------


def _task_mentions(text: str) -> set[str]:
    """Backticked `<domain>.<action>` names whose domain is a module of tasks/.

    Left out, since they share the form but name no task: an outbox topic written as such (the
    name followed by "outbox message", "outbox row" or "message") and an audit action (inside
    "audited (...)"); a migration (`catalog.0008`) does not match the form."""
    domains = sorted(path.stem for path in (ROOT / "tasks").glob("*.py") if path.stem != "__init__")
    pattern = re.compile(rf"`((?:{'|'.join(domains)})\.[a-z][a-z0-9_]*)`")
    names = set()
    prose = _prose(text)
    for match in pattern.finditer(prose):
        after = prose[match.end() : match.end() + 20]
        before = prose[max(0, match.start() - 10) : match.start()]
        if re.match(r"\s+(?:outbox\s+)?(?:message|row)\b", after) or before.endswith("audited ("):
            continue
        names.add(match[1])
    return names


def test_every_celery_task_the_readme_names_is_registered_or_scheduled() -> None:
    # given: the task names of the README, the registered tasks and the beat schedule
    from config.celery_app import app

    app.loader.import_default_modules()
    names = _task_mentions(_readme())
    assert {"outbox.cleanup", "payments.webhooks_requeue_stale", "payouts.batch_run"} <= names
    schedule = set(django_settings.CELERY_BEAT_SCHEDULE)
    schedule |= {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    # then: each is a task or a beat entry
    missing = sorted(names - set(app.tasks) - schedule)
    assert not missing, "README names Celery tasks that are neither registered nor scheduled:\n" + "\n".join(missing)


def test_the_task_reader_leaves_out_topics_and_audit_actions() -> None:
    text = (
        "`payouts.batch_run` (beat); a `catalog.photo_uploaded` outbox row; audited (`outbox.requeue_lost`);"
        " migration `catalog.0008`"
    )
    assert _task_mentions(text) == {"payouts.batch_run"}


# --- 6. repository paths --------------------------------------------------------------------

_FILE_SUFFIX = re.compile(r"\.(?:py|ya?ml|md|html|txt|in|json|js|css|toml|cfg|sh|jpg|png)$")


def _ignored(path: str) -> bool:
    """Whether .gitignore leaves `path` out of the repository: what the processes write (var/,
    bench-results/, .venv/) is named in the README but is no repository file."""
    patterns = [line for line in (ROOT / ".gitignore").read_text().splitlines() if line and line[0] not in "#!"]
    parts = path.rstrip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.rstrip("/")) for prefix in prefixes for pattern in patterns)


def _path_mentions(text: str) -> set[str]:
    """Words of code spans that are repository paths: relative, with a `/`, starting at a
    top-level entry of the repository or ending in a file suffix (URLs, absolute paths, options
    and rates such as `6000/min` are not)."""
    top = {entry.name for entry in ROOT.iterdir()}
    paths = set()
    for span in _spans(text):
        for word in span.split():
            word = word.strip(",;:()\"'")
            if "/" not in word or word.startswith(("/", "-", ":")) or "://" in word or "=" in word:
                continue
            if word.split("/")[0] in top or _FILE_SUFFIX.search(word):
                paths.add(word)
    return paths


def _exists(path: str) -> bool:
    """Whether `path` exists; `<placeholder>` and `*` match any name, `{a,b}` either."""
    options = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if options:
        return all(_exists(path.replace(options[0], option)) for option in options[1].split(","))
    pattern = re.sub(r"<[^<>]*>", "*", path).rstrip("/")
    directory = path.endswith("/")
    matches = list(ROOT.glob(pattern)) if "*" in pattern else [ROOT / pattern]
    return any(match.is_dir() if directory else match.exists() for match in matches)


def test_every_repository_path_the_readme_names_exists() -> None:
    # given: the repository paths of the README's code spans, but what .gitignore leaves out
    paths = {path for path in _path_mentions(_readme()) if not _ignored(path)}
    assert {"apps/outbox/requeue.py", "config/prometheus/alerts.yml"} <= paths
    # then: each exists
    missing = sorted(path for path in paths if not _exists(path))
    assert not missing, "README names paths that do not exist:\n" + "\n".join(missing)


# --- 7. URL paths ---------------------------------------------------------------------------

_METHOD = r"(?:GET|POST|PUT|PATCH|DELETE)"
# A value each kind of placeholder can take: a number, a UUID, a slug, a signed token.
_SAMPLES = ("1", str(uuid.UUID(int=1)), "demo-studio", "eyJ0IjoxfQ:1vAbCd:Xy-z_0")


def _url_mentions(text: str) -> set[str]:
    """The paths of the README's page tables (those with a "where" or "page" column: code spans
    starting with `/`, and paths after the web's address http://127.0.0.1:8000; Flower's :5555
    is another process) and of every `<METHOD> /path` code span.

    Left out: the other tables' spans starting with `/` are files (`/tmp/...`); paths starting
    /v1/, /v2/, ... are the payment providers' own APIs (Stripe's `POST /v1/transfers`), as
    Darkroom's API is under /api/v1/."""
    paths = set()
    for table in _tables(text):
        if not {"where", "page"} & set(table.header):
            continue
        for cell in (cell for row in table.rows for cell in row):
            paths |= {span for span in _SPAN.findall(cell) if span.startswith("/")}
            paths |= set(re.findall(r"http://127\.0\.0\.1:8000(/[^\s)`]*)", cell))
    for span in _spans(text):
        paths |= set(re.findall(rf"\b{_METHOD}(?:/{_METHOD})*\s+(/[^\s`]*)", span))
    paths = {re.sub(r"(?<!\.\.)[.,;:]+$", "", path) for path in paths}
    return {path for path in paths if not re.match(r"/v\d+/", path)}


_PLACEHOLDER = re.compile(r"<[^<>]*>|\{[^{}]*\}|\.\.\.")


def _literals_kept(path: str, route: str) -> bool:
    """Whether each literal segment of a README path with placeholders is literal in the route
    that answered it: `/s/<studio>/basket/` must not pass as the gallery `s/<studio>/<event>/`.
    (A path without placeholders is a concrete address, `/s/demo-studio/`, whose segments
    may fill the route's placeholders.)"""
    segments, parts = path.strip("/").split("/"), route.strip("/").split("/")
    if len(segments) != len(parts):
        return "<path:" in route
    return all(_PLACEHOLDER.search(segment) or segment == part for segment, part in zip(segments, parts, strict=True))


def _resolves(path: str) -> bool:
    """Whether some value of each placeholder (`<studio>`, `{id}`, `{a|b}`, `...`) resolves, to
    a route with the path's literal segments; an optional part (`/api/v1/announcements[/{id}]`)
    must resolve with and without it."""
    path = path.split("?", 1)[0]
    optional = re.search(r"\[([^\[\]]*)\]", path)
    if optional:
        return _resolves(path.replace(optional[0], "", 1)) and _resolves(path.replace(optional[0], optional[1], 1))
    placeholders = _PLACEHOLDER.findall(path)
    choices = [p[1:-1].split("|") if "|" in p else (["x.jpg"] if p == "..." else list(_SAMPLES)) for p in placeholders]
    for values in itertools.product(*choices):
        concrete = path
        for placeholder, value in zip(placeholders, values, strict=True):
            concrete = concrete.replace(placeholder, value, 1)
        try:
            match = resolve(concrete)
        except Resolver404:
            continue
        if not placeholders or _literals_kept(path, match.route):
            return True
    return False


def test_every_url_path_the_readme_names_resolves() -> None:
    # given: the page and endpoint paths of the README
    paths = _url_mentions(_readme())
    assert {"/s/<studio>/cart/", "/api/v1/checkouts", "/healthz"} <= paths
    # then: the URLconf serves each
    unresolved = sorted(path for path in paths if not _resolves(path))
    assert not unresolved, "README names URL paths that do not resolve:\n" + "\n".join(unresolved)
