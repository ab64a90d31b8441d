"""Several accounts: strategy profiles per account, the live-trading flag, and intent routing."""

import copy
from dataclasses import replace

import pytest

from tests.unit.conftest import MORNING, RULES, make_market
from tests.unit.test_config import _data, _error
from tests.unit.test_config_live import _live
from thetadesk.account import entry_order_id
from thetadesk.config import DEFAULT_PROFILE, parse_config
from thetadesk.lockstep import LockstepDesk
from thetadesk.symbol import Profiles, SymbolEngine


def _two_accounts(data=None, **second):
    data = data or _data()
    other = copy.deepcopy(data["accounts"][0])
    other.update({"name": "ira", **second})
    data["accounts"].append(other)
    return data


# -- config ------------------------------------------------------------------------------------


def test_a_profile_gives_only_what_differs_and_takes_the_rest_from_the_strategy_section():
    data = _two_accounts(strategies=["wide"])
    data["strategies"] = {"wide": {"short_delta": 0.16, "width": 10.0}}
    config = parse_config(data, env={})
    profiles = config.strategy_profiles()
    assert list(profiles) == [DEFAULT_PROFILE, "wide"]
    wide, base = profiles["wide"], profiles[DEFAULT_PROFILE]
    assert (wide.short_delta, wide.width) == (0.16, 10.0)
    assert (wide.target_dte, wide.min_dte, wide.entry_start) == (
        base.target_dte, base.min_dte, base.entry_start)
    assert [a.strategies for a in config.accounts] == [(DEFAULT_PROFILE,), ("wide",)]


@pytest.mark.parametrize(("mutate", "text"), [
    (lambda d: d["accounts"][0].update(strategies=["nope"]),
     "accounts[0].strategies[0]: unknown strategy profile 'nope' (there are: default)"),
    (lambda d: d["accounts"][0].update(strategies=["default", "default"]),
     "accounts[0].strategies[1]: duplicate strategy profile 'default'"),
    (lambda d: d["accounts"][0].update(strategies=[]),
     "accounts[0].strategies"),
    (lambda d: d.update(strategies={"default": {"width": 10.0}}),
     "strategies.default: is the strategy section's own name"),
    (lambda d: d.update(strategies={"wide": {"width": -1}}),
     "strategies.wide.width"),
    (lambda d: d.update(strategies={"Wide!": {"width": 10.0}}),
     "strategies"),
    (lambda d: d.update(strategies={"short": {"min_dte": 5, "target_dte": 10}}),
     "strategies.short.min_dte: must be > exits.close_dte (7)"),
    (lambda d: d.update(strategies={"wide": {"widht": 10.0}}),
     "strategies.wide.widht"),
])
def test_bad_profiles_are_refused_with_their_path(mutate, text):
    data = _data()
    mutate(data)
    assert text in str(_error(data))


def test_real_money_needs_live_true_and_live_true_needs_real_money():
    real = _live("polygon", "alpaca", alpaca={"paper": False})
    assert ("accounts[0].live: must be true to trade real money (alpaca.paper is false)"
            in str(_error(real)))
    real["accounts"][0]["live"] = True
    config = parse_config(real, env={})
    assert config.accounts[0].live
    assert not config.accounts[0].alpaca.paper
    paper = _data()
    paper["accounts"][0]["live"] = True
    assert "accounts[0].live: is for Alpaca accounts with alpaca.paper false" in str(
        _error(paper))
    paper_alpaca = _live("polygon", "alpaca", live=True)
    assert "accounts[0].live: is for Alpaca accounts" in str(_error(paper_alpaca))


# -- the symbol engine and routing -------------------------------------------------------------


def test_one_engine_proposes_once_per_profile_each_tagged_and_with_its_own_ids():
    wide = replace(RULES, short_delta=0.16, width=10.0)
    both = SymbolEngine("SPY", {"default": RULES, "wide": wide}, make_market()).tick(MORNING)
    alone = SymbolEngine("SPY", RULES, make_market()).tick(MORNING)
    assert [i.profile for i in both.intents] == ["default", "wide"]
    default, other = both.intents
    # The default profile's intent is exactly the single-profile engine's (ids unchanged).
    assert default == alone.intents[0]
    assert default.intent_id == alone.intents[0].intent_id
    assert other.intent_id == "SPY:bull_put_credit:wide:20250106T1100"
    assert other.context["profile"] == "wide"
    short, long = sorted(leg.contract.strike for leg in other.spread.legs)[::-1]
    assert short - long == 10.0
    assert abs(other.context["short_delta"]) < abs(default.context["short_delta"])
    # The same legs under two profiles would still be two orders in one account.
    assert entry_order_id("paper", default) != entry_order_id(
        "paper", replace(default, profile="wide"))


def test_a_profile_outside_its_window_leaves_the_others_proposing():
    late = replace(RULES, entry_start=RULES.entry_end.replace(hour=15, minute=0))
    tick = SymbolEngine("SPY", {"default": RULES, "late": late}, make_market()).tick(MORNING)
    assert [i.profile for i in tick.intents] == ["default"]
    assert tick.note == "late: outside the entry window"
    profiles = Profiles({"default": RULES, "late": late})
    assert profiles.in_entry_window(MORNING)
    assert not Profiles({"late": late}).in_entry_window(MORNING)


def test_each_account_receives_only_the_intents_of_its_own_profiles(tmp_path):
    data = _two_accounts(strategies=["wide"])
    data["strategies"] = {"wide": {"short_delta": 0.16, "width": 10.0,
                                   "min_credit_fraction": 0.08}}
    data["market"]["tick_seconds"] = 1800
    config = parse_config(data, env={})
    assert list(Profiles.for_symbol(config, "SPY")) == ["default", "wide"]
    desk = LockstepDesk(config, tmp_path)
    try:
        desk.run(1)
        intents = {name: desk.ledger.intents(name) for name in ("paper", "ira")}
    finally:
        desk.close()
    assert intents["paper"]
    assert intents["ira"]
    assert all(":wide:" not in row["intent_id"] for row in intents["paper"])
    assert all(":wide:" in row["intent_id"] for row in intents["ira"])
