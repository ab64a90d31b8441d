"""Specifications of results.json's risk-free rates, deflated Sharpe block and baselines
(thetadesk.backtest.results)."""

from datetime import date

import pytest

from tests.unit.backtest.conftest import START, sim_data
from thetadesk.analytics.deflated import deflated_sharpe
from thetadesk.analytics.metrics import daily_returns, metrics
from thetadesk.backtest.engine import Backtest, backtest_config
from thetadesk.backtest.results import build_results, deflated, risk_free_rates
from thetadesk.rates import TBILL_3M, TBILL_3M_LAST

pytestmark = pytest.mark.usefixtures("quiet_logs")


def test_risk_free_rates_are_the_t_bill_of_each_sessions_year():
    sessions = [date(2017, 12, 29), date(2018, 1, 2)]
    rates, info = risk_free_rates(sessions)
    assert rates == pytest.approx([0.0093, 0.0194])
    assert info["by_year"] == pytest.approx({"2017": 0.0093, "2018": 0.0194})
    assert "TB3MS" in info["name"]


def test_a_year_before_the_table_has_no_rate_and_a_later_one_carries_forward():
    rates, info = risk_free_rates([date(1998, 6, 1)])
    assert rates is None
    assert info["by_year"] is None
    assert "1999" in info["unknown"]
    rates, info = risk_free_rates([date(2027, 3, 1)])
    assert rates == [TBILL_3M[TBILL_3M_LAST]]
    assert "2027" in info["carried_forward"]


def test_deflated_block_is_the_daily_returns_and_their_excess():
    equity = [101.0, 99.99, 101.9898, 101.5]
    rates = [0.0252] * 4
    out = deflated(equity, 100.0, rates, trial_sharpes=[1.0, 2.0, 3.0])
    r = daily_returns(equity, 100.0)
    assert out["psr"] == pytest.approx(deflated_sharpe(r)["psr"])
    assert out["dsr"] == pytest.approx(deflated_sharpe(r, trial_sharpes=[1.0, 2.0, 3.0])["dsr"])
    assert out["psr_rf"] == pytest.approx(deflated_sharpe(r - 0.0001)["psr"])
    assert out["psr_rf"] < out["psr"]
    assert deflated(equity, 100.0, None)["psr_rf"] is None


def test_the_desk_and_both_baselines_share_sessions_and_rates(tmp_path):
    config, _, end, notes = backtest_config(sim_data(), source="sim", start=START,
                                            end=date(2025, 1, 17))
    bt = Backtest(config, tmp_path / "a", end=end, data="sim", notes=notes)
    results = build_results(bt.run(), bt.market, trial_sharpes=[0.5, 1.0, 1.5])

    sessions = [date.fromisoformat(e["session"]) for e in results["equity"]]
    for name in ("buy_and_hold", "put_write"):
        base = results["baselines"][name]
        curve = [e[name] for e in results["equity"]]
        expected = metrics(curve, 100_000.0, [], rf=TBILL_3M[2025], sessions=sessions)
        assert base["sharpe_rf"] == pytest.approx(expected["sharpe_rf"])
        assert base["sharpe"] == pytest.approx(expected["sharpe"])
        assert base["sessions"] == results["sessions"] == len(sessions)
        assert {"commissions", "spread", "total", "per_trade"} <= set(base["costs"])
        assert base["deflated_sharpe"]["dsr"] is None  # not selected from trials
    assert results["baselines"]["buy_and_hold"]["costs"]["total"] == 0.0
    assert results["baselines"]["buy_and_hold"]["exposure"] == 1.0
    put = results["baselines"]["put_write"]
    assert put["exposure"] == 1.0  # sold at 10:00 on the first session, held at every close
    assert put["costs"]["fills"] == 1
    assert put["costs"]["commissions"] > 0
    assert results["deflated_sharpe"]["n_trials"] == 3
    assert results["deflated_sharpe"]["dsr"] is not None
    assert results["risk_free_mean"] == pytest.approx(TBILL_3M[2025])


def test_the_baselines_idle_cash_earns_what_the_desks_does(tmp_path):
    end = date(2025, 1, 31)

    def put_write_end(name, interest):
        data = sim_data(**{"strategy.min_credit_fraction": 0.99})  # the desk never trades
        if interest is None:
            data["accounts"][0].pop("cash_interest", None)
        else:
            data["accounts"][0]["cash_interest"] = interest
        config, _, last, _ = backtest_config(data, source="sim", start=START, end=end)
        bt = Backtest(config, tmp_path / name, end=last, data="sim")
        out = build_results(bt.run(), bt.market)
        return out["final_equity"], out["baselines"]["put_write"]["final_equity"]

    desk_off, write_off = put_write_end("off", None)
    desk_on, write_on = put_write_end("on", {"rate": 0.05})
    assert desk_off == 100_000
    earned = desk_on - desk_off
    assert earned > 0
    # The put-write holds the same cash (premium aside) all month: about the same interest.
    assert write_on - write_off == pytest.approx(earned, rel=0.05)
