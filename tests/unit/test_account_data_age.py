"""Specifications of the account's input to the stale-data breaker: ``AccountTick.data_age_s``,
how long a held position has gone without usable quotes."""

from datetime import timedelta

from tests.unit.conftest import MORNING, account_rules, make_market
from thetadesk.account import AccountEngine


def test_account_data_age_grows_while_a_held_position_has_no_usable_quote(ledger, broker, risk,
                                                                          intent):
    opened = AccountEngine(account_rules(), ledger, broker, make_market(), risk.check, MORNING)
    assert opened.tick(MORNING, [intent]).data_age_s == 0.0  # every quote it needed came
    held = {leg.contract for leg in intent.spread.legs}
    bad = make_market(corrupt=lambda c, now: "crossed" if c in held else None)
    engine = AccountEngine(account_rules(close_dte=60), ledger, broker, bad, risk.check, MORNING)

    ages = [engine.tick(MORNING + timedelta(minutes=m), []).data_age_s for m in (5, 10, 15)]
    engine.market = make_market()
    healed = engine.tick(MORNING + timedelta(minutes=20), []).data_age_s

    assert ages == [300.0, 600.0, 900.0]
    assert healed == 0.0


def test_account_data_age_counts_within_a_session(ledger, broker, risk, intent):
    AccountEngine(account_rules(), ledger, broker, make_market(), risk.check, MORNING).tick(
        MORNING, [intent])
    held = {leg.contract for leg in intent.spread.legs}
    bad = make_market(corrupt=lambda c, now: "crossed" if c in held else None)
    engine = AccountEngine(account_rules(close_dte=60), ledger, broker, bad, risk.check, MORNING)
    engine.tick(MORNING + timedelta(minutes=5), [])

    next_day = engine.tick(MORNING + timedelta(days=1), []).data_age_s

    assert next_day == 0.0  # the overnight gap is not staleness; it counts from this session
