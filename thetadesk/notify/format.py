"""Pure message formatting for the notification channels (no sending, no clock, no I/O).

- ``format_sms``: one GSM-7 SMS segment (at most 160 characters, every one in the GSM 03.38
  basic set, so no character costs two septets and the message never switches to UCS-2).
- ``format_voice``: text for a text-to-speech call: money, "P&L" and tickers spelled for the ear,
  URLs and identifiers dropped, the key sentence said twice; a repeat call of an escalation says
  so first ("Repeat call 2 of 4.").
- ``format_telegram``: Telegram ``parse_mode=HTML`` text with the severity in bold.
- ``format_table``: a monospace text table (wrap it in ``<pre>`` for Telegram).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from thetadesk.errors import DataError
from thetadesk.messages import Alert

SMS_MAX_CHARS = 160
TELEGRAM_MAX_CHARS = 4096
ELLIPSIS = "..."  # "…" is not in the GSM 03.38 set

# The GSM 03.38 basic character set without the escape, line feed and carriage return (SMS text is
# collapsed onto one line). The extension table ([]{}|~^\€) is left out on purpose: each of its
# characters costs two septets, so allowing them would break the 160-character promise.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_REPLACEMENTS = {
    "[": "(", "]": ")", "{": "(", "}": ")", "~": "-", "|": "/", "\\": "/", "^": "'",
    "€": "EUR", "‘": "'", "’": "'", "‚": "'", "′": "'", "“": '"', "”": '"', "„": '"',
    "″": '"', "–": "-", "—": "-", "−": "-", "…": "...", "•": "*", "·": "*", "×": "x",
    "→": "->", "←": "<-", "≥": ">=", "≤": "<=", "`": "'",
}


def _gsm_char(ch: str) -> str:
    if ch in GSM7_BASIC:
        return ch
    if ch in _GSM_REPLACEMENTS:
        return _GSM_REPLACEMENTS[ch]
    if ch.isspace():
        return " "
    # Accented letters outside the set (á, ç, ô, ...) fall back to their base letter.
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if c in GSM7_BASIC)
    return base or "?"


def gsm7_safe(text: str) -> str:
    """``text`` with every character outside the GSM-7 basic set replaced and all whitespace
    (including line breaks) collapsed to single spaces."""
    replaced = "".join(_gsm_char(ch) for ch in text)
    return " ".join(replaced.split())


def _truncate_words(text: str, limit: int, keep: int = 0) -> str:
    """``text`` cut to at most ``limit`` characters ending in ``...``, at a word boundary if one
    lies after the first ``keep`` characters (the part that must survive)."""
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    cut = text[:room]
    space = cut.rfind(" ")
    if space > keep:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ELLIPSIS


def format_sms(alert: Alert) -> str:
    """``"CRITICAL breaker_tripped: <message>"`` as one GSM-7 segment of at most 160 characters.

    Characters outside the GSM-7 basic set are replaced (``[`` -> ``(``, ``€`` -> ``EUR``, smart
    quotes -> straight ones, ``á`` -> ``a``, anything else -> ``?``), whitespace is collapsed, and
    a longer text is cut at a word boundary with ``...``. The severity and kind prefix and the
    start of the message (where the key fact goes) are what is kept.
    """
    prefix = gsm7_safe(f"{alert.severity.value.upper()} {alert.kind}:")
    text = f"{prefix} {gsm7_safe(alert.message)}".rstrip()
    return _truncate_words(text, SMS_MAX_CHARS, keep=len(prefix))


# --- voice -------------------------------------------------------------------------------------

_URL = re.compile(r"(?:\b(?:see|visit|at)\s+)?\b(?:https?://|www\.)\S*[^\s.,;:!?)]",
                  re.IGNORECASE)
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
                   re.IGNORECASE)
# "order_id=abc123", "id: 42", "client order id #7f3a"
_LABELLED_ID = re.compile(r"\b(?:[a-z]+[ _])?id\s*[:=#]\s*[\w-]+", re.IGNORECASE)
# Tokens of 8+ letters/digits/-/_ that mix letters and digits: order ids, OCC symbols, hashes.
_MIXED_TOKEN = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{8,}\b")
_PNL = re.compile(r"\bP\s*&\s*L\b|\bPnL\b", re.IGNORECASE)
_MONEY = re.compile(r"(?<![\w$])([-−])?\$\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?!\d)")
_TICKER = re.compile(r"\b[A-Z]{2,5}\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _money_words(match: re.Match[str]) -> str:
    sign, dollars, cents = match.group(1), match.group(2), match.group(3)
    cents_value = int(cents.ljust(2, "0")) if cents else 0
    dollars_value = int(dollars.replace(",", ""))
    parts = []
    if dollars_value or not cents_value:
        parts.append(f"{dollars} dollar" + ("" if dollars_value == 1 else "s"))
    if cents_value:
        parts.append(f"{cents_value} cent" + ("" if cents_value == 1 else "s"))
    return ("minus " if sign else "") + " and ".join(parts)


def speakable(text: str) -> str:
    """``text`` as a speech engine should read it: URLs and identifiers removed, ``P&L`` ->
    "profit and loss", ``$1,234.56`` -> "1,234 dollars and 56 cents", ``%`` -> "percent",
    all-capital tickers of 2-5 letters spelled out ("SPY" -> "S P Y"), underscores -> spaces."""
    text = _URL.sub("", text)
    text = _UUID.sub("", text)
    text = _LABELLED_ID.sub("", text)
    text = _MIXED_TOKEN.sub("", text)
    text = _PNL.sub("profit and loss", text)
    text = _MONEY.sub(_money_words, text)
    text = text.replace("%", " percent")
    text = _TICKER.sub(lambda m: " ".join(m.group(0)), text)
    text = text.replace("_", " ")
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)  # brackets left empty by a removed id or URL
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"[,;:]+(?=[.!?])", "", text)  # "for,." left by a removed id
    return re.sub(r"([.!?])[\s.!?]*[.!?]", r"\1", text)  # "limit.. ." left by a removed URL


def format_voice(alert: Alert, call: int = 1, calls: int | None = None) -> str:
    """``"Critical alert: breaker tripped. <message> I repeat: <first sentence>"``.

    The message goes through ``speakable`` and the first sentence (the key fact) is said again
    at the end so a listener who missed it on the first pass hears it.

    ``call`` numbers the calls of an escalation (1: the first). A later call starts with
    ``"Repeat call 2 of 4."`` (``calls`` the planned number, or just ``"Repeat call 2."``), so
    whoever picks up knows the alert is still unacknowledged and nobody else has taken it.
    """
    if isinstance(call, bool) or not isinstance(call, int) or call < 1:
        raise DataError(f"voice call number must be an integer >= 1, got {call!r}")
    if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int)
                              or calls < call):
        raise DataError(f"voice calls must be an integer >= the call number {call}, "
                        f"got {calls!r}")
    kind = alert.kind.replace("_", " ").replace("-", " ").strip()
    body = speakable(alert.message)
    if body and body[-1] not in ".!?":
        body += "."
    head = f"{alert.severity.value.capitalize()} alert: {kind}."
    if call > 1:
        head = f"Repeat call {call}{'' if calls is None else f' of {calls}'}. {head}"
    if not body:
        return f"{head} I repeat: {kind}."
    key = _SENTENCE_END.split(body, maxsplit=1)[0]
    return f"{head} {body} I repeat: {key}"


# --- telegram ----------------------------------------------------------------------------------

def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # Telegram's HTML mode needs only <, > and & escaped


def format_telegram(alert: Alert) -> str:
    """``"<b>CRITICAL</b> breaker_tripped\\n<message>"`` for Telegram's HTML parse mode.

    ``<``, ``>`` and ``&`` in the kind and message are escaped; a message too long for one
    Telegram message (4096 characters) is cut with ``...`` before escaping, so no entity is split.
    """
    head = f"<b>{alert.severity.value.upper()}</b> {_escape(alert.kind)}"
    message = alert.message.strip()
    room = TELEGRAM_MAX_CHARS - len(head) - 1
    body = _escape(message)
    if len(body) > room:
        low, high = 0, len(message)  # the longest raw prefix whose escaped form fits
        while low < high:
            mid = (low + high + 1) // 2
            if len(_escape(message[:mid])) + len(ELLIPSIS) <= room:
                low = mid
            else:
                high = mid - 1
        body = _escape(message[:low]) + ELLIPSIS
    return f"{head}\n{body}" if body else head


# --- tables ------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return " ".join(str(value).split())


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A monospace table: a header line, a line of dashes, one line per row, columns two spaces
    apart. Integers get thousands separators, floats two decimals, ``None`` is blank, booleans
    read yes/no. A column whose non-blank cells are all numbers is right-aligned, any other
    left-aligned. Trailing spaces are stripped from every line.

    Raises ``DataError`` if there are no headers or a row's length differs from theirs.
    """
    if not headers:
        raise DataError("format_table needs at least one header")
    width = len(headers)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"format_table: row {index} has {len(row)} cells but there are "
                            f"{width} headers")
    cells = [[_cell(value) for value in row] for row in rows]
    head = [_cell(h) for h in headers]
    widths = [max([len(head[c]), *(len(r[c]) for r in cells)]) for c in range(width)]
    right = [bool(rows) and all(_numeric(row[c]) or row[c] is None for row in rows)
             and any(row[c] is not None for row in rows) for c in range(width)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right,
                                                                      strict=True)]
        return "  ".join(padded).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)
