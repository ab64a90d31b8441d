"""The research protocol's rules (thetadesk/backtest/research.py): a protocol file is checked
before anything runs, variants are counted, the choice reads in-sample figures only."""

import textwrap

import pytest

from thetadesk.backtest.research import choose, crash_summary, load_protocol, variants
from thetadesk.config import DEFAULT_CONFIG
from thetadesk.errors import ConfigError


def _write(tmp_path, body):
    path = tmp_path / "protocol.yaml"
    path.write_text(textwrap.dedent(body).replace("BASE", str(DEFAULT_CONFIG)))
    return path


GOOD = """\
    name: test
    base: BASE
    fixed: {market.tick_seconds: 900}
    periods:
      in_sample: {start: 2014-01-02, end: 2015-12-31}
      held_out: {start: 2016-01-04, end: 2018-10-31}
      second_test: {start: 2000-01-03, end: 2013-12-31}
    selection: {objective: sharpe, max_drawdown: 0.1, min_trades: 5}
    grid:
      strategy.short_delta: [0.2, 0.3]
      exits.take_profit: [0.6, 0.75]
    variants:
      narrow: {strategy.width: 5.0}
      wide: {strategy.width: 10.0, strategy.min_credit_fraction: 0.05}
"""


def test_load_protocol_counts_every_variant_named_sets_times_grid(tmp_path):
    protocol = load_protocol(_write(tmp_path, GOOD))
    found = variants(protocol)
    assert len(found) == 2 * 2 * 2
    label, params = found[-1]
    assert label == "wide, short_delta=0.3, take_profit=0.75"
    assert params == (("strategy.width", 10.0), ("strategy.min_credit_fraction", 0.05),
                      ("strategy.short_delta", 0.3), ("exits.take_profit", 0.75))
    assert len(protocol.digest) == 64


@pytest.mark.parametrize(("change", "text"), [
    ("    periods:\n      in_sample: {start: 2014-01-02, end: 2015-12-31}\n"
     "      held_out: {start: 2015-06-01, end: 2018-10-31}\n",
     "periods.held_out overlaps the in-sample period"),
    ("    periods:\n      in_sample: {start: 2014-01-02, end: 2015-12-31}\n",
     "periods.held_out is missing"),
    ("    grid: {strategy.short_delta: [0.7]}\n",
     "variant narrow, short_delta=0.7: strategy.short_delta: must be < 0.5"),
    ("    grid: {strategy.nope: [1]}\n", "variant narrow, nope=1: strategy.nope: unknown key"),
    ("    selection: {objective: sharpe, max_drawdown: 3}\n", "selection.max_drawdown"),
    ("    budget: 3\n", "unknown key(s) ['budget']"),
])
def test_load_protocol_refuses_a_bad_protocol_before_running_anything(tmp_path, change, text):
    lines = GOOD.splitlines(keepends=True)
    key = change.strip().split(":")[0]
    # Replace the section the change names (or add an unknown one).
    out, skip = [], False
    for line in lines:
        top = line.startswith("    ") and not line.startswith("      ")
        if top:
            skip = line.strip().startswith(key + ":")
            if skip:
                continue
        if not skip:
            out.append(line)
    path = _write(tmp_path, "".join(out) + change)
    with pytest.raises(ConfigError) as err:
        load_protocol(path)
    assert text in str(err.value)


FAMILIES = GOOD.replace("""    variants:
      narrow: {strategy.width: 5.0}
      wide: {strategy.width: 10.0, strategy.min_credit_fraction: 0.05}
""", """    desk: {sizing.risk_per_trade_pct: 2.0}
    families:
      exits:
        tp60: {exits.take_profit: 0.6}
        expire: {exits.hold_to_expiry: true, exits.min_close_value: 0.05}
      filter:
        none: {strategy.min_iv: 0.0}
        trend: {strategy.trend_sma: 200}
    grid: {strategy.short_delta: [0.2, 0.3]}
    walk_forward:
      grid: {strategy.short_delta: [0.2, 0.3]}
""").replace("""    grid:
      strategy.short_delta: [0.2, 0.3]
      exits.take_profit: [0.6, 0.75]
""", "")


def test_families_cross_each_other_and_the_grid_with_the_desk_first(tmp_path):
    protocol = load_protocol(_write(tmp_path, FAMILIES))
    found = variants(protocol)
    assert len(found) == 2 * 2 * 2
    label, params = found[3]
    assert label == "exits=tp60, filter=trend, short_delta=0.3"
    assert params == (("sizing.risk_per_trade_pct", 2.0), ("exits.take_profit", 0.6),
                      ("strategy.trend_sma", 200), ("strategy.short_delta", 0.3))
    assert protocol.walk_forward == {"grid": {"strategy.short_delta": [0.2, 0.3]},
                                     "fixed": (), "in_sample": 252, "out_of_sample": 126}


def test_choose_takes_the_best_in_sample_objective_among_those_meeting_the_constraints(
        tmp_path):
    protocol = load_protocol(_write(tmp_path, GOOD))
    n = len(variants(protocol))
    summaries = [{"sharpe": 0.1 * i, "max_drawdown": 0.05, "trades": 10} for i in range(n)]
    summaries[-1]["max_drawdown"] = 0.3  # the best Sharpe breaks the drawdown constraint
    summaries[-2]["trades"] = 2  # the next has too few trades
    choice = choose(protocol, summaries)
    assert choice.index == n - 3
    assert choice.met_constraints
    assert "meeting the constraints" in choice.why


def test_choose_with_no_variant_meeting_the_constraints_says_so(tmp_path):
    protocol = load_protocol(_write(tmp_path, GOOD))
    n = len(variants(protocol))
    summaries = [{"sharpe": None if i == 0 else 1.0 / i, "max_drawdown": 0.5, "trades": 10}
                 for i in range(n)]
    choice = choose(protocol, summaries)
    assert (choice.index, choice.met_constraints) == (1, False)
    assert "no variant met the constraints" in choice.why


def test_crash_summary_measures_the_fall_from_the_close_before_the_shock():
    run = {"shock": {"date": "2025-03-04", "gap": -0.2, "vol_multiplier": 3.0},
           "shocked": {"sessions": ["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06"],
                       "equity": [100_000, 90_000, 88_000, 95_000], "capital": 100_000,
                       "open_positions": [4, 4, 2, 2]},
           "calm": {"sessions": ["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06"],
                    "equity": [100_000, 100_100, 100_050, 100_300], "capital": 100_000,
                    "open_positions": [4, 4, 4, 4]}}
    out = crash_summary(run, window=2)
    assert out["shocked"]["loss_fraction"] == pytest.approx(0.12)
    assert out["shocked"]["positions_before"] == 4
    assert out["calm"]["loss_fraction"] == pytest.approx(0.0)  # never below the start
