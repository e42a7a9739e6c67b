"""Strings a JSON document may hold but PostgreSQL cannot store.

JSON's `\\uXXXX` escapes can spell NUL (`\\u0000`) and lone UTF-16 surrogates (`\\ud800`).
Python parses both into `str`; PostgreSQL text and jsonb refuse NUL, and a lone surrogate cannot
even be encoded to UTF-8 on its way there. Either would surface as a 500 in the statement that
stores it. The API's JSON parser refuses lone surrogates anywhere (DRF's CharField refuses NUL
itself); the webhook endpoint refuses either in the identifiers it stores as text.

`text_field_problem` is the one check of a short free-text field (a shipping address line, a
carrier, a withdrawal's reason); `title_problem` of a title shown on pages and in e-mails;
`multiline_text_problem` of multi-line text (an announcement's body); `identifier_problem` of an
identifier a client chooses (a ledger account's client id); `search_text` makes a search box's
input safe to query. `STORED_TEXT` lists every stored column these rules guard, with its rule, for
`manage.py text_audit` (text stored before a rule existed may break it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass


def strings_of(document: object) -> Iterator[str]:
    """Every string of a parsed JSON document: object keys, values, list items, at any depth."""
    pending: list[object] = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def is_unicode_text(value: str) -> bool:
    """False for a string holding a lone surrogate (not Unicode text: no UTF-8 encoding exists)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_storable_text(value: str) -> bool:
    """True when PostgreSQL text can hold `value`: Unicode text without NUL."""
    return "\x00" not in value and is_unicode_text(value)


def text_field_problem(value: str, *, required: bool, max_length: int) -> str:
    """What is wrong with an already stripped one-line text field, as a sentence for the user;
    "" when nothing is."""
    if required and not value:
        return "This field is required."
    if len(value) > max_length:
        return f"At most {max_length} characters."
    if any(not ch.isprintable() for ch in value):
        return "Control characters are not allowed."
    return ""


# Bidirectional embeddings, overrides and isolates (LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI):
# in a title they reorder the text around it (on the page, in an e-mail subject), spoofing it.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def title_problem(value: str, *, max_length: int) -> str:
    """What is wrong with a title (an event's, an announcement's), as a sentence for the user;
    "" when nothing is. Refuses control characters and bidirectional overrides, but not other
    format characters (the zero-width joiner of an emoji, a soft hyphen)."""
    if not value.strip():
        return "This field is required."
    if len(value) > max_length:
        return f"At most {max_length} characters."
    if any(ch in _BIDI_CONTROLS or unicodedata.category(ch) == "Cc" for ch in value):
        return "Control characters (including text-direction overrides) are not allowed."
    return ""


# A multi-line text keeps its line breaks (LF, or the CR LF a browser sends from a textarea) and
# tabs; every other control character is refused.
_MULTILINE_ALLOWED = frozenset("\t\n")
_LINE_BREAK_CR = "\r\n"


def multiline_text_problem(value: str, *, max_length: int) -> str:
    """What is wrong with multi-line text (an announcement's body: attendee pages, the e-mail's
    text), as a sentence for the user; "" when nothing is. Keeps tabs and line breaks (LF, CR LF;
    not a lone CR), stored as sent. Refuses every other control character (C0, DEL, C1, NUL) and
    bidirectional overrides, as `title_problem` does, and a lone surrogate (no UTF-8 for it)."""
    if not value.strip():
        return "This field is required."
    if len(value) > max_length:
        return f"At most {max_length} characters."
    if not is_unicode_text(value):
        return "Not Unicode text (a lone surrogate)."
    for index, ch in enumerate(value):
        if ch in _MULTILINE_ALLOWED or (ch == "\r" and value.startswith(_LINE_BREAK_CR, index)):
            continue
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) == "Cc":
            return "Control characters (including text-direction overrides) are not allowed; line breaks and tabs are."
    return ""


def identifier_problem(value: str, *, max_length: int) -> str:
    """What is wrong with an identifier a client chooses (a ledger account's client id), as a
    sentence for the user; "" when nothing is (an empty one included: "none"). Printable
    characters only (`str.isprintable`: no control, format, line-break or surrogate character, no
    space but U+0020) and not only spaces, so that it reads as what it matches."""
    if len(value) > max_length:
        return f"At most {max_length} characters."
    if not value.isprintable():
        return "Only printable characters: no control, format or line-break characters."
    if value and not value.strip():
        return "Not only spaces."
    return ""


def search_text(value: str, *, max_length: int) -> str:
    """A search box's input as it is matched: control characters (NUL among them, which
    PostgreSQL text refuses) read as spaces, runs of whitespace as one space, trimmed, and cut to
    `max_length` characters. A query string cannot hold a lone surrogate (Django decodes it with
    replacement), so the result is always storable text."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())[:max_length]


# --- stored text ------------------------------------------------------------------------------
# A value stored before its column's rule existed may break it. The rules below are the ones
# above as they apply to a stored value: its column already bounds its length, so only what it
# holds is judged. `clean` rewrites display text without the characters its rule refuses;
# identifiers and keys have none (clients send them back to match, so they are only reported).


@dataclass(frozen=True)
class StoredTextRule:
    """`problem`: what the rule refuses in a stored value ("" when nothing). `clean`: the value
    without the refused characters, or "" when nothing the rule accepts remains; None for a rule
    whose values are never rewritten."""

    name: str
    problem: Callable[[str], str]
    clean: Callable[[str], str] | None


@dataclass(frozen=True)
class StoredTextColumn:
    """A stored column held to a rule: `model` is "app_label.ModelName"."""

    model: str
    field: str
    rule: StoredTextRule


def _refused_in_title(ch: str) -> bool:
    return ch in _BIDI_CONTROLS or unicodedata.category(ch) == "Cc"


def _refused_in_text_field(ch: str) -> bool:
    return not ch.isprintable()


_SPACES = re.compile(" {2,}")


def _one_line_cleaned(value: str, refused: Callable[[str], bool]) -> str:
    """One line of text without its refused characters: one that is whitespace (a line break, a
    tab, NBSP where refused) reads as a space, so the words it separated stay apart; runs of
    spaces become one, and the ends are trimmed (the rule of migration notifications 0004)."""
    kept = "".join((" " if ch.isspace() else "") if refused(ch) else ch for ch in value)
    return _SPACES.sub(" ", kept).strip(" ")


# Line breaks other than LF and CR LF (a lone CR, VT, FF, FS, GS, RS, NEL: what `str.splitlines`
# also breaks at), which a multi-line text refuses: each reads as LF.
_OTHER_LINE_BREAKS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85")


def _multiline_cleaned(value: str) -> str:
    """Multi-line text without what `multiline_text_problem` refuses: another line break reads as
    LF, other whitespace as a space, the rest goes; tabs, LF and CR LF stay as they are."""
    out = []
    for index, ch in enumerate(value):
        if ch in _MULTILINE_ALLOWED or (ch == "\r" and value.startswith(_LINE_BREAK_CR, index)):
            out.append(ch)
        elif ch in _OTHER_LINE_BREAKS:
            out.append("\n")
        elif _refused_in_title(ch):
            out.append(" " if ch.isspace() else "")
        else:
            out.append(ch)
    return "".join(out)


TITLE_RULE = StoredTextRule(
    "title",
    lambda value: title_problem(value, max_length=len(value)),
    lambda value: _one_line_cleaned(value, _refused_in_title),
)
NAME_RULE = StoredTextRule(  # a name may be empty; one given is a title
    "name",
    lambda value: title_problem(value, max_length=len(value)) if value else "",
    lambda value: _one_line_cleaned(value, _refused_in_title),
)
MULTILINE_RULE = StoredTextRule(
    "multi-line text", lambda value: multiline_text_problem(value, max_length=len(value)), _multiline_cleaned
)
TEXT_FIELD_RULE = StoredTextRule(
    "one-line text",
    lambda value: text_field_problem(value, required=False, max_length=len(value)),
    lambda value: _one_line_cleaned(value, _refused_in_text_field),
)
IDENTIFIER_RULE = StoredTextRule("identifier", lambda value: identifier_problem(value, max_length=len(value)), None)
# A print size pairs a product with its event's price of the same (kind, size) (`product_price`,
# the checkout's join): rewriting either side alone would give the product another size's price,
# or none. Judged as one-line text, never rewritten.
PRINT_SIZE_RULE = StoredTextRule("print size", TEXT_FIELD_RULE.problem, None)

# Every stored column a rule of this module guards, with that rule (a new one belongs here too).
# Rows of an append-only model (`APPEND_ONLY`) are never rewritten, whatever their rule.
STORED_TEXT: tuple[StoredTextColumn, ...] = (
    StoredTextColumn("tenancy.Organization", "name", TITLE_RULE),
    StoredTextColumn("tenancy.ApiKey", "name", TITLE_RULE),
    StoredTextColumn("catalog.Event", "title", TITLE_RULE),
    StoredTextColumn("catalog.Product", "size", PRINT_SIZE_RULE),
    StoredTextColumn("catalog.Price", "size", PRINT_SIZE_RULE),
    StoredTextColumn("commerce.CheckoutLine", "size", TEXT_FIELD_RULE),
    StoredTextColumn("notifications.Attendee", "name", NAME_RULE),
    StoredTextColumn("notifications.Announcement", "title", TITLE_RULE),
    StoredTextColumn("notifications.Announcement", "body", MULTILINE_RULE),
    # An announcement's title and body, copied to each attendee's notification.
    StoredTextColumn("notifications.Notification", "title", TITLE_RULE),
    StoredTextColumn("notifications.Notification", "body", MULTILINE_RULE),
    StoredTextColumn("ledger.LedgerAccount", "client_id", IDENTIFIER_RULE),
    StoredTextColumn("ledger.LedgerEvent", "client_id", IDENTIFIER_RULE),
    StoredTextColumn("ledger.LedgerEvent", "reference", TEXT_FIELD_RULE),
    StoredTextColumn("ledger.LedgerEventKey", "idempotency_key", IDENTIFIER_RULE),
)
