"""Pure formatters: concrete inputs, exact outputs."""

from datetime import UTC, datetime

import pytest

from thetadesk.errors import DataError
from thetadesk.messages import Alert, Severity
from thetadesk.notify.format import (
    GSM7_BASIC,
    format_sms,
    format_table,
    format_telegram,
    format_voice,
    gsm7_safe,
    speakable,
)

AT = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)


def alert(message, severity=Severity.CRITICAL, kind="breaker_tripped"):
    return Alert(severity, kind, "key", message, AT)


def test_sms_prefixes_severity_and_kind():
    assert format_sms(alert("Entries halted.")) == "CRITICAL breaker_tripped: Entries halted."
    assert format_sms(alert("fill", Severity.INFO, "fill")) == "INFO fill: fill"


def test_sms_replaces_non_gsm_characters_and_collapses_whitespace():
    text = format_sms(alert("Loss  [SPY]\n{QQQ} ~ “big” — 5€ … café Ångström ação ✓",
                            Severity.WARNING))
    assert text == ('WARNING breaker_tripped: Loss (SPY) (QQQ) - "big" - 5EUR ... café Ångström '
                    "acao ?")
    assert set(text) <= GSM7_BASIC


def test_sms_short_message_is_not_truncated_at_exactly_160():
    prefix = "CRITICAL breaker_tripped: "
    message = "x" * (160 - len(prefix))
    assert format_sms(alert(message)) == prefix + message
    assert len(format_sms(alert(message + "y"))) == 160


def test_sms_truncates_at_word_boundary_keeping_the_start():
    message = "Daily loss 2,100 dollars breached the 2,000 limit. " + "More detail here. " * 20
    text = format_sms(alert(message))
    assert len(text) <= 160
    assert text.startswith("CRITICAL breaker_tripped: Daily loss 2,100 dollars breached the 2,000 "
                           "limit.")
    assert text.endswith("...")
    assert text[:-3].split()[-1] in {"More", "detail", "here"}  # cut between words, not inside


def test_sms_long_kind_is_cut_hard():
    text = format_sms(alert("m", kind="k" * 300))
    assert len(text) == 160
    assert text.endswith("...")


def test_gsm7_safe_on_everything_is_in_the_set():
    weird = "".join(chr(c) for c in range(32, 0x3000, 7))
    assert set(gsm7_safe(weird)) <= GSM7_BASIC


def test_voice_expands_money_pnl_tickers_and_repeats_key_sentence():
    text = format_voice(alert("Daily P&L -$1,234.56 on SPY breached the limit. Entries halted."))
    assert text == ("Critical alert: breaker tripped. Daily profit and loss minus 1,234 dollars "
                    "and 56 cents on S P Y breached the limit. Entries halted. I repeat: Daily "
                    "profit and loss minus 1,234 dollars and 56 cents on S P Y breached the "
                    "limit.")


@pytest.mark.parametrize(("raw", "spoken"), [
    ("$1", "1 dollar"),
    ("$0.50", "50 cents"),
    ("$0.01", "1 cent"),
    ("$2.5", "2 dollars and 50 cents"),
    ("$1,000", "1,000 dollars"),
    ("$0", "0 dollars"),
    ("PnL 3%", "profit and loss 3 percent"),
])
def test_speakable_money(raw, spoken):
    assert speakable(raw) == spoken


def test_voice_drops_urls_and_ids():
    text = speakable("Order ord-7f3a9c21e rejected (order_id=abc123) for SPY250221P00570000, "
                     "see https://broker.example/o/1. Id 3f2b1c4d-0000-4a4a-8b8b-123456789abc.")
    assert "http" not in text
    assert "7f3a" not in text
    assert "abc123" not in text
    assert "250221" not in text
    assert "3f2b1c4d" not in text
    assert text == "Order rejected for. Id."


def test_voice_without_message_still_says_the_kind_twice():
    assert format_voice(alert("", Severity.WARNING, "actor_gave_up")) == (
        "Warning alert: actor gave up. I repeat: actor gave up.")


def test_telegram_escapes_html_and_bolds_severity():
    text = format_telegram(alert("P&L <-2%> & <b>x</b> \"q\" it's", Severity.WARNING, "a<b"))
    assert text == ("<b>WARNING</b> a&lt;b\nP&amp;L &lt;-2%&gt; &amp; &lt;b&gt;x&lt;/b&gt; "
                    "\"q\" it's")  # quotes need no escaping in Telegram's HTML mode


def test_telegram_truncates_to_4096_without_splitting_entities():
    text = format_telegram(alert("&" * 5000))
    assert len(text) == 4096 - 1  # one more "&amp;" would not fit
    assert text.endswith("&amp;...")
    assert text.startswith("<b>CRITICAL</b> breaker_tripped\n&amp;")
    assert format_telegram(alert("a" * 4000)).endswith("a" * 4000)


def test_table_aligns_numbers_right_and_text_left():
    text = format_table([["SPY", 3, 1234.5, None], ["QQQ", 10, -2.0, True]],
                        ["symbol", "qty", "pnl", "ok"])
    assert text.split("\n") == [
        "symbol  qty       pnl  ok",
        "------  ---  --------  ---",
        "SPY       3  1,234.50",
        "QQQ      10     -2.00  yes",
    ]


def test_table_without_rows_has_header_and_rule():
    assert format_table([], ["a", "bb"]) == "a  bb\n-  --"


def test_table_rejects_ragged_rows():
    with pytest.raises(DataError, match="row 1 has 1 cells but there are 2 headers"):
        format_table([["a", 1], ["b"]], ["x", "y"])
    with pytest.raises(DataError, match="at least one header"):
        format_table([], [])
