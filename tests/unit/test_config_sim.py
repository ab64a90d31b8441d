"""Specifications of `market.sim` and of accounts' `fill_model` and `fees`: what the config
accepts, the errors it gives, and that the values reach the SimMarket and SimBroker it builds."""

import copy
import pickle
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.unit.test_config import _delete, _set
from thetadesk.adapters import sim_market
from thetadesk.adapters.sim_broker import Fees, FillModel
from thetadesk.adapters.sim_market import SimMarket, SimRegimes, SimSymbol
from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.errors import ConfigError, DataError
from thetadesk.rates import CashInterest
from thetadesk.wiring import build_broker, build_market, dividend_yields_of

DEFAULT_DATA = yaml.safe_load(DEFAULT_CONFIG.read_text())
MIDDAY = datetime(2025, 1, 6, 17, 0, tzinfo=UTC)  # 12:00 New York on the first session


def _data(**sim):
    data = copy.deepcopy(DEFAULT_DATA)
    data["market"]["sim"].update(sim)
    return data


def _account(data):
    return data["accounts"][0]


def _option_fees(fees):
    # The four per-contract fees this config sets (Fees may carry others, such as share fees).
    return (fees.commission_per_contract, fees.orf_per_contract, fees.taf_per_contract_sold,
            fees.taf_cap)


def _error(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return info.value


@pytest.fixture
def build(tmp_path):
    """Config data -> (SimMarket, SimBroker of the first account), brokers closed afterwards."""
    brokers = []

    def make(data):
        config = parse_config(data, env={})
        market = build_market(config)
        broker = build_broker(config.accounts[0], market, tmp_path,
                              dividend_yields=dividend_yields_of(config))
        brokers.append(broker)
        return market, broker

    yield make
    for broker in brokers:
        broker.close()


# --- defaults: the shipped config behaves as before -------------------------------------------


def test_default_config_builds_the_market_of_the_constructor_defaults(build):
    market, _ = build(copy.deepcopy(DEFAULT_DATA))
    plain = SimMarket(7, {"SPY": SimSymbol(580.0, 0.16, 0.013, 5.0),
                          "QQQ": SimSymbol(500.0, 0.20, 0.006, 5.0)}, 0.04, market._start)

    assert market._regimes == SimRegimes()
    assert market.correlation == plain.correlation == 0.85
    assert market._daily == plain._daily == frozenset({"SPY", "QQQ"})
    assert market._vol_scale == sim_market._VOL_SCALE
    for days in (0, 30, 90, 200):
        now = MIDDAY + timedelta(days=days)
        assert market.spot("QQQ", now) == plain.spot("QQQ", now)
        assert market.atm_iv("SPY", now) == plain.atm_iv("SPY", now)
        assert market.regime(now) == plain.regime(now)


def test_config_regime_defaults_equal_sim_regimes_defaults():
    config = parse_config({**copy.deepcopy(DEFAULT_DATA), "market": {
        k: v for k, v in DEFAULT_DATA["market"].items() if k != "sim"}}, env={})

    assert SimRegimes(**config.market.sim.regimes.model_dump()) == SimRegimes()
    assert config.market.sim.daily_expiries is None
    assert config.market.sim.correlation == sim_market._DEFAULT_CORRELATION


def test_default_account_charges_only_its_commission_and_fills_inside_the_spread_by_chance(build):
    _, broker = build(copy.deepcopy(DEFAULT_DATA))

    assert _option_fees(broker._fees) == (0.65, 0.0, 0.0, 0.0)
    # The calibrated mid-fill curve is on (a limit inside the spread fills by chance, per
    # minute); the impact term charges only executions large against the displayed size.
    assert broker._fill_model == FillModel(seed=7, mid_fill_probability=True,
                                           mid_fill_exponent=3.6, mid_fill_per_minute=True,
                                           impact_half_spreads=1.0)


def test_account_without_fill_model_gets_the_broker_default(build):
    data = copy.deepcopy(DEFAULT_DATA)
    del _account(data)["fill_model"]

    _, broker = build(data)

    assert broker._fill_model == FillModel()


# --- valid values reach SimMarket and SimBroker ------------------------------------------------


def test_market_sim_values_reach_the_market(build):
    regimes = {"vol": [0.5, 1.0, 2.0], "jump_probability": [0.0, 0.02, 0.1], "jump_mean": -3.0,
               "vrp": [0.1, 0.1, 0.1], "stress_after_jump": 0.25}
    data = _data(correlation=0.3, daily_expiries=["SPY"])
    data["market"]["sim"]["regimes"].update(regimes)

    market, _ = build(data)

    assert market.correlation == 0.3
    assert market._daily == frozenset({"SPY"})
    assert market._regimes.vol == (0.5, 1.0, 2.0)
    assert market._regimes.jump_probability == (0.0, 0.02, 0.1)
    assert market._regimes.vrp == (0.1, 0.1, 0.1)
    assert (market._regimes.jump_mean, market._regimes.stress_after_jump) == (-3.0, 0.25)
    # Only SPY lists the daily expiries now: QQQ has the weeklies and monthlies alone.
    spy, qqq = market.chain("SPY", MIDDAY).expiries(), market.chain("QQQ", MIDDAY).expiries()
    assert len(spy) > len(qqq)


def test_market_sim_vix_options_list_the_vix_chain(build):
    market, _ = build(_data(vix_options=True))
    assert market.chain("VIX", MIDDAY).expiries()
    plain, _ = build(_data())
    with pytest.raises(DataError, match="unknown symbol 'VIX'"):
        plain.chain("VIX", MIDDAY)


def test_market_sim_transition_drives_the_regime(build):
    data = _data()
    data["market"]["sim"]["regimes"]["transition"] = [[0, 0, 1], [0, 0, 1], [0, 0, 1]]

    market, _ = build(data)

    assert {market.regime(MIDDAY + timedelta(days=d)) for d in range(0, 60, 3)} == {"stressed"}


def test_market_sim_is_ignored_by_replay():
    data = copy.deepcopy(DEFAULT_DATA)
    data["market"].update(source="replay", start="2008-09-29",
                          symbols={"SPY": DEFAULT_DATA["market"]["symbols"]["SPY"]})
    _account(data)["symbols"] = ["SPY"]

    config = parse_config(data, env={})  # daily_expiries still names QQQ: not checked

    assert config.market.sim.daily_expiries == ("SPY", "QQQ")


def test_fill_model_values_reach_the_broker_with_the_top_level_seed(build):
    data = copy.deepcopy(DEFAULT_DATA)
    data["seed"] = 11
    _account(data)["fill_model"] = {"slippage_ticks": 2, "mid_fill_probability": True,
                                    "max_display_share": 0.5}

    _, broker = build(data)

    assert broker._fill_model == FillModel(slippage_ticks=2, mid_fill_probability=True,
                                           max_display_share=0.5, seed=11)


def test_fill_model_calibration_and_impact_keys_reach_the_broker(build):
    _, broker = build(copy.deepcopy(DEFAULT_DATA))

    model = broker._fill_model
    assert (model.mid_fill_exponent, model.mid_fill_per_minute, model.impact_half_spreads) == (
        3.6, True, 1.0)


def test_cash_interest_reaches_the_broker_and_absent_means_none(build):
    _, shipped = build(copy.deepcopy(DEFAULT_DATA))
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["cash_interest"] = {"rate": 0.03, "spread": 0.005, "day_count": 365}
    _, fixed = build(data)
    del _account(data)["cash_interest"]
    data["accounts"][0]["name"] = "plain"
    _, none = build(data)

    assert shipped._interest == CashInterest("tbill_3m", 0.0, 360)
    assert fixed._interest == CashInterest(0.03, 0.005, 365)
    assert none._interest is None


def test_fill_model_explicit_seed_wins_over_the_top_level_seed(build):
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["fill_model"]["seed"] = 3

    _, broker = build(data)

    assert broker._fill_model.seed == 3


def test_fees_section_uses_the_account_commission_and_retail_regulatory_defaults(build):
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["fees"] = {}

    _, broker = build(data)

    assert _option_fees(broker._fees) == (0.65, 0.02, 0.00279, 8.30)
    assert _option_fees(broker._fees) == _option_fees(Fees())  # the retail defaults


def test_fees_values_reach_the_broker(build):
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["fees"] = {"commission_per_contract": 0.65, "orf_per_contract": 0.03,
                              "taf_per_contract_sold": 0.003, "taf_cap": 5.0}

    _, broker = build(data)

    assert _option_fees(broker._fees) == (0.65, 0.03, 0.003, 5.0)


def test_fees_commission_alone_stands_for_the_account_commission(build):
    data = copy.deepcopy(DEFAULT_DATA)
    del _account(data)["commission_per_contract"]
    _account(data)["fees"] = {"commission_per_contract": 0.5}

    _, broker = build(data)

    assert parse_config(data, env={}).accounts[0].commission_per_contract == 0.5
    assert broker._fees.commission_per_contract == 0.5


def test_share_fees_settlement_and_early_assignment_reach_the_broker(build):
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["fees"] = {"commission_per_share": 0.005, "taf_per_share_sold": 0.0002}
    _account(data)["settlement"] = "cash"
    _account(data)["early_assignment"] = True

    _, broker = build(data)

    assert (broker._fees.commission_per_share, broker._fees.taf_per_share_sold) == (0.005,
                                                                                   0.0002)
    assert broker._settlement == "cash"
    assert broker._early.dividend_yields == {"SPY": 0.013, "QQQ": 0.006}


def test_default_account_settles_physically_without_early_assignment(build, tmp_path):
    _, broker = build(copy.deepcopy(DEFAULT_DATA))
    assert (broker._settlement, broker._early) == ("physical", None)
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["early_assignment"] = True
    config = parse_config(data, env={})
    with pytest.raises(DataError, match="needs the symbols' dividend yields"):
        build_broker(config.accounts[0], build_market(config), tmp_path / "x")


# --- each bad value gives its own readable error -----------------------------------------------


def _both(*mutations):
    def mutate(data):
        for m in mutations:
            m(data)

    return mutate


SIM = ["market", "sim"]
REG = ["market", "sim", "regimes"]
ACC = ["accounts", 0]


@pytest.mark.parametrize(
    ("mutate", "path", "text"),
    [
        pytest.param(_set([*SIM, "correlation"], 1.5), "market.sim.correlation",
                     "market.sim.correlation: must be <= 1", id="correlation-above-1"),
        pytest.param(_set([*SIM, "correlation"], -0.1), "market.sim.correlation",
                     "market.sim.correlation: must be >= 0", id="correlation-below-0"),
        pytest.param(_set([*SIM, "corelation"], 0.5), "market.sim.corelation",
                     "market.sim.corelation: unknown key (allowed: correlation, "
                     "daily_expiries, regimes, shocks, vix_options)", id="sim-unknown-key"),
        pytest.param(_set([*SIM, "daily_expiries"], ["SPY", "IWM"]),
                     "market.sim.daily_expiries[1]",
                     "market.sim.daily_expiries[1]: unknown symbol 'IWM' (market.symbols has: "
                     "QQQ, SPY)", id="daily-expiry-unknown-symbol"),
        pytest.param(_set([*SIM, "daily_expiries"], ["SPY", "SPY"]),
                     "market.sim.daily_expiries[1]",
                     "market.sim.daily_expiries[1]: duplicate symbol 'SPY'",
                     id="daily-expiry-duplicate"),
        pytest.param(_set([*SIM, "daily_expiries"], "SPY"), "market.sim.daily_expiries",
                     "market.sim.daily_expiries: must be a list, got 'SPY'",
                     id="daily-expiries-not-a-list"),
        pytest.param(_set([*REG, "vol"], [1.0, 1.0]), "market.sim.regimes.vol",
                     "market.sim.regimes.vol: must be a list of 3 numbers: "
                     "[calm, normal, stressed]", id="regime-list-too-short"),
        pytest.param(_set([*REG, "skew"], [1.0, True, 1.0]), "market.sim.regimes.skew",
                     "market.sim.regimes.skew: must be a list of 3 numbers: "
                     "[calm, normal, stressed]", id="regime-list-bool"),
        pytest.param(_set([*REG, "vol"], [0.75, 1.0, 0.0]), "market.sim.regimes.vol[2]",
                     "market.sim.regimes.vol[2]: must be > 0", id="regime-vol-zero"),
        pytest.param(_set([*REG, "jump_probability"], [0.004, 1.5, 0.04]),
                     "market.sim.regimes.jump_probability[1]",
                     "market.sim.regimes.jump_probability[1]: must be <= 1",
                     id="jump-probability-above-1"),
        pytest.param(_set([*REG, "transition", 1], [0.015, 0.965, 0.01]),
                     "market.sim.regimes.transition[1]",
                     "market.sim.regimes.transition[1]: must sum to 1, got 0.99",
                     id="transition-row-sum"),
        pytest.param(_set([*REG, "transition"], [[1, 0, 0], [0, 1, 0]]),
                     "market.sim.regimes.transition",
                     "market.sim.regimes.transition: must be a list of 3 numbers: "
                     "[calm, normal, stressed]", id="transition-two-rows"),
        pytest.param(_set([*REG, "stress_after_jump"], 2), "market.sim.regimes.stress_after_jump",
                     "market.sim.regimes.stress_after_jump: must be <= 1", id="stress-after-jump"),
        pytest.param(_set([*REG, "jump_mean"], 1.0), "market.sim.regimes.jump_mean",
                     "market.sim.regimes.jump_mean: must be <= 0", id="jump-mean-up"),
        pytest.param(_set([*REG, "jumps"], {}), "market.sim.regimes.jumps",
                     "market.sim.regimes.jumps: unknown key (allowed: transition, vol, "
                     "jump_probability, skew, term_slope, vrp, spread, volume, "
                     "stress_after_jump, jump_mean, jump_sd, jump_vol)", id="regimes-unknown-key"),
        pytest.param(_set([*ACC, "fill_model", "slippage_ticks"], -1),
                     "accounts[0].fill_model.slippage_ticks",
                     "accounts[0].fill_model.slippage_ticks: must be >= 0", id="slippage-negative"),
        pytest.param(_set([*ACC, "fill_model", "slippage_ticks"], 1.5),
                     "accounts[0].fill_model.slippage_ticks",
                     "accounts[0].fill_model.slippage_ticks: must be an integer, got '1.5'",
                     id="slippage-fractional"),
        pytest.param(_set([*ACC, "fill_model", "max_display_share"], 0),
                     "accounts[0].fill_model.max_display_share",
                     "accounts[0].fill_model.max_display_share: must be > 0",
                     id="display-share-zero"),
        pytest.param(_set([*ACC, "fill_model", "max_display_share"], 1.5),
                     "accounts[0].fill_model.max_display_share",
                     "accounts[0].fill_model.max_display_share: must be <= 1",
                     id="display-share-above-1"),
        pytest.param(_set([*ACC, "fill_model", "mid_fill_probability"], 0.5),
                     "accounts[0].fill_model.mid_fill_probability",
                     "accounts[0].fill_model.mid_fill_probability: must be true or false, "
                     "got '0.5'", id="mid-fill-not-bool"),
        pytest.param(_set([*ACC, "fill_model", "seed"], True), "accounts[0].fill_model.seed",
                     "accounts[0].fill_model.seed: must be an integer, got 'true'",
                     id="fill-seed-bool"),
        pytest.param(_set([*ACC, "fill_model", "mode"], "market"),
                     "accounts[0].fill_model.mode",
                     "accounts[0].fill_model.mode: must be one of: limit, mid", id="fill-mode"),
        pytest.param(_set([*ACC, "fill_model", "slippage"], 1), "accounts[0].fill_model.slippage",
                     "accounts[0].fill_model.slippage: unknown key (allowed: mode, "
                     "slippage_ticks, mid_fill_probability, max_display_share, seed, "
                     "max_open_interest_share, mid_fill_exponent, mid_fill_per_minute, "
                     "impact_half_spreads)",
                     id="fill-model-unknown-key"),
        pytest.param(_set([*ACC, "fill_model", "mid_fill_exponent"], 0),
                     "accounts[0].fill_model.mid_fill_exponent",
                     "accounts[0].fill_model.mid_fill_exponent: must be > 0",
                     id="mid-fill-exponent-zero"),
        pytest.param(_set([*ACC, "fill_model", "mid_fill_per_minute"], "yes"),
                     "accounts[0].fill_model.mid_fill_per_minute",
                     "accounts[0].fill_model.mid_fill_per_minute: must be true or false, "
                     "got 'yes'", id="mid-fill-per-minute-not-bool"),
        pytest.param(_set([*ACC, "fill_model", "impact_half_spreads"], 11),
                     "accounts[0].fill_model.impact_half_spreads",
                     "accounts[0].fill_model.impact_half_spreads: must be <= 10",
                     id="impact-too-large"),
        pytest.param(_set([*ACC, "cash_interest", "rate"], "libor"),
                     "accounts[0].cash_interest.rate",
                     'accounts[0].cash_interest.rate: must be "tbill_3m" or an annual rate such '
                     "as 0.04", id="interest-rate-unknown-name"),
        pytest.param(_set([*ACC, "cash_interest", "rate"], True),
                     "accounts[0].cash_interest.rate",
                     'accounts[0].cash_interest.rate: must be "tbill_3m" or an annual rate such '
                     "as 0.04", id="interest-rate-bool"),
        pytest.param(_set([*ACC, "cash_interest", "rate"], 4),
                     "accounts[0].cash_interest.rate",
                     "accounts[0].cash_interest.rate: must be between 0 and 0.25 (an annual "
                     "decimal: 0.04 = 4%)", id="interest-rate-percent"),
        pytest.param(_set([*ACC, "cash_interest", "spread"], 0.1),
                     "accounts[0].cash_interest.spread",
                     "accounts[0].cash_interest.spread: must be <= 0.05", id="interest-spread"),
        pytest.param(_set([*ACC, "cash_interest", "day_count"], 364),
                     "accounts[0].cash_interest.day_count",
                     "accounts[0].cash_interest.day_count: must be one of: 360, 365",
                     id="interest-day-count"),
        pytest.param(_delete([*ACC, "cash_interest", "rate"]),
                     "accounts[0].cash_interest.rate",
                     "accounts[0].cash_interest.rate: required", id="interest-rate-missing"),
        pytest.param(_set([*ACC, "fees"], {"taf_cap": -1}), "accounts[0].fees.taf_cap",
                     "accounts[0].fees.taf_cap: must be >= 0", id="fees-negative"),
        pytest.param(_set([*ACC, "fees"], {"sec_fee": 0.01}), "accounts[0].fees.sec_fee",
                     "accounts[0].fees.sec_fee: unknown key (allowed: commission_per_contract, "
                     "orf_per_contract, taf_per_contract_sold, taf_cap, commission_per_share, "
                     "taf_per_share_sold)", id="fees-unknown-key"),
        pytest.param(_set([*ACC, "settlement"], "shares"), "accounts[0].settlement",
                     "accounts[0].settlement: must be one of: physical, cash",
                     id="settlement-unknown"),
        pytest.param(_set([*ACC, "early_assignment"], "yes"), "accounts[0].early_assignment",
                     "accounts[0].early_assignment: must be true or false, got 'yes'",
                     id="early-assignment-not-bool"),
        pytest.param(_set([*ACC, "fees"], {"commission_per_contract": 0.5}),
                     "accounts[0].fees.commission_per_contract",
                     "accounts[0].fees.commission_per_contract: 0.5 contradicts "
                     "commission_per_contract (0.65): give the commission once, or the same "
                     "value in both", id="commissions-contradict"),
        pytest.param(_both(_delete([*ACC, "commission_per_contract"]), _set([*ACC, "fees"], {})),
                     "accounts[0].commission_per_contract",
                     "accounts[0].commission_per_contract: required", id="no-commission"),
    ],
)
def test_parse_config_invalid_sim_value_names_path_and_reason(mutate, path, text):
    data = copy.deepcopy(DEFAULT_DATA)
    mutate(data)

    error = _error(data)

    assert error.path == path
    assert str(error) == text


def test_fees_commission_equal_to_the_account_commission_is_accepted():
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["fees"] = {"commission_per_contract": 0.65}

    config = parse_config(data, env={})

    assert config.accounts[0].fees.commission_per_contract == 0.65


def test_fees_numbers_from_the_environment_are_not_treated_as_secrets():
    data = copy.deepcopy(DEFAULT_DATA)
    _account(data)["fees"] = {"taf_cap": "${TD_TAF_CAP}"}

    config = parse_config(data, env={"TD_TAF_CAP": "7.5"})

    assert config.accounts[0].fees.taf_cap == 7.5


# --- SimRegimes, the SimMarket keyword the config fills -----------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"vol": (1.0, 1.0)}, "SimRegimes.vol must be 3 numbers"),
        ({"transition": ((1, 0, 0), (0, 1, 0), (0, 0.5, 0.4))}, "rows must be >= 0 and sum to 1"),
        ({"spread": (0.0, 1.0, 1.0)}, "SimRegimes.spread must be > 0"),
        ({"jump_probability": (0.0, 0.0, 1.5)}, "must be in [0, 1]"),
    ],
)
def test_sim_regimes_refuses_bad_tables(kwargs, text):
    from thetadesk.errors import DataError

    with pytest.raises(DataError, match=re.escape(text)):
        SimRegimes(**kwargs)


def test_sim_market_with_regimes_survives_pickling():
    regimes = SimRegimes(vol=(0.5, 1.0, 2.0))
    market = SimMarket(7, {"SPY": SimSymbol(580.0, 0.16)}, 0.04, MIDDAY.date(), regimes=regimes)

    copy_ = pickle.loads(pickle.dumps(market))

    assert copy_._regimes == regimes
    assert copy_.spot("SPY", MIDDAY + timedelta(days=5)) == market.spot("SPY",
                                                                        MIDDAY + timedelta(days=5))


def test_market_sim_shocks_reach_the_market(build):
    plain, _ = build(_data())
    shocked, _ = build(_data(shocks=[{"date": "2025-02-03", "gap": -0.1, "vol_multiplier": 2}]))
    before = datetime(2025, 1, 31, 20, 0, tzinfo=UTC)
    opening = datetime(2025, 2, 3, 14, 30, tzinfo=UTC)  # 09:30 New York
    assert shocked.spot("SPY", before) == plain.spot("SPY", before)
    assert shocked.spot("SPY", opening) < 0.93 * plain.spot("SPY", before)
    assert shocked.regime(opening) == "stressed"
    assert pickle.loads(pickle.dumps(shocked)).spot("QQQ", opening) == shocked.spot("QQQ", opening)


@pytest.mark.parametrize(("shock", "text"), [
    ({"date": "2025-02-01", "gap": -0.1}, "market.sim.shocks[0].date: 2025-02-01 is not an NYSE"),
    ({"date": "2025-01-06", "gap": -0.1}, "must come after the first session (2025-01-06)"),
    ({"date": "2025-02-03", "gap": -0.7}, "market.sim.shocks[0].gap"),
    ({"date": "2025-02-03", "gap": -0.1, "vol_multiplier": 9}, "shocks[0].vol_multiplier"),
    ({"date": "2025-02-03"}, "market.sim.shocks[0].gap"),
])
def test_market_sim_bad_shock_names_path_and_reason(shock, text):
    assert text in str(_error(_data(shocks=[shock])))


def test_market_sim_two_shocks_on_one_day_are_refused():
    shock = {"date": "2025-02-03", "gap": -0.1}
    assert "shocks[1].date: two shocks on 2025-02-03" in str(_error(_data(shocks=[shock, shock])))
