"""Specifications of the VaR backtest (scripts/var_backtest.py): the test statistics on hand
examples, and the model on real S&P 500 history (1999-2018, the arch package's data)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "var_backtest.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("var_backtest", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


vb = _load_script()


@pytest.fixture(scope="module")
def sp500():
    return vb.load_sp500()


@pytest.fixture(scope="module")
def ewma_report(sp500):
    return vb.run_backtest(*sp500, method="ewma", window=500).report()


def test_kupiec_hand_example_5_exceedances_in_250_days_at_99pct():
    # LR = -2 [245 ln 0.99 + 5 ln 0.01 - 245 ln 0.98 - 5 ln 0.02] = 1.9568; chi2(1) p = 0.16185.
    lr, p = vb.kupiec(5, 250, 0.99)

    assert lr == pytest.approx(1.956810, abs=1e-6)
    assert p == pytest.approx(0.161855, abs=1e-5)


def test_kupiec_zero_exceedances_and_exactly_expected():
    assert vb.kupiec(0, 250, 0.99)[0] == pytest.approx(-2 * 250 * np.log(0.99))
    assert vb.kupiec(25, 500, 0.95) == (pytest.approx(0.0, abs=1e-12), pytest.approx(1.0))


def test_christoffersen_hand_example():
    # Transitions 00 00 01 11 11 10 00: n00=3, n01=1, n10=1, n11=2; pi0=1/4, pi1=2/3, pi=3/7.
    # LR = -2 [4 ln(4/7) + 3 ln(3/7) - 3 ln(3/4) - ln(1/4) - ln(1/3) - 2 ln(2/3)] = 1.24295.
    lr, p = vb.christoffersen([0, 0, 0, 1, 1, 1, 0, 0])

    assert lr == pytest.approx(1.2429473, abs=1e-6)
    assert p == pytest.approx(0.264904, abs=1e-5)


def test_christoffersen_rejects_clustered_exceedances_and_accepts_spread_ones():
    clustered = np.zeros(1000, dtype=bool)
    clustered[[100, 101, 102, 103, 500, 501, 502, 503, 900, 901]] = True
    spread = np.zeros(1000, dtype=bool)
    spread[np.arange(50, 1000, 100)] = True

    assert vb.christoffersen(clustered)[1] < 0.001
    assert vb.christoffersen(spread)[1] > 0.05


def test_ewma_99pct_var_passes_kupiec_at_95pct_confidence_on_real_data(ewma_report):
    r99 = ewma_report["0.99"]

    assert ewma_report["days"] == 4530
    assert r99["kupiec_p"] > 0.05
    assert r99["kupiec_pass"]
    assert r99["expected"] == pytest.approx(45.3)


def test_ewma_95pct_var_passes_both_tests_on_real_data(ewma_report):
    assert ewma_report["0.95"]["pass"]


def test_plain_historical_99pct_var_fails_kupiec_on_real_data(sp500, ewma_report):
    # The test has power: unfiltered historical simulation reacts too slowly to 2008.
    report = vb.run_backtest(*sp500, method="historical", window=500).report()

    assert report["0.99"]["kupiec_p"] < 0.01
    assert not report["0.99"]["pass"]
    assert report["0.99"]["exceedances"] > ewma_report["0.99"]["exceedances"]


def test_main_prints_json_and_writes_a_png(tmp_path, capsys):
    plot = tmp_path / "out" / "vb.png"

    code = vb.main(["--json", "--plot", str(plot)])  # the defaults: garch, window 1000

    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["0.99"]["pass"] and report["0.95"]["pass"] else 1)
    assert (report["method"], report["window"], report["days"]) == ("garch", 1000, 4030)
    # The requirement, on the default model: 99% VaR passes Kupiec at 95% confidence.
    assert report["0.99"]["kupiec_p"] > 0.05
    assert code == 0
    assert set(report["0.99"]) >= {"exceedances", "expected", "kupiec_lr", "kupiec_p",
                                   "christoffersen_lr", "christoffersen_p", "pass"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_garch_backtest_has_no_look_ahead(sp500):
    # Forecast day j (j = i - window) uses returns up to the close of day i only; the model is
    # refitted at j = 0, 21, 42, ... Rewriting every close from index 648 on (just after the
    # refit at j = 147, i = 647) must leave the first 148 forecasts exactly as they were.
    dates, close = sp500
    dates, close = dates[:800], close[:800]
    changed = close.copy()
    changed[648:] *= np.exp(np.random.default_rng(0).normal(0.0, 0.03, 800 - 648))

    a = vb.run_backtest(dates, close, method="garch", window=500, refit=21)
    b = vb.run_backtest(dates, changed, method="garch", window=500, refit=21)

    for level in (0.99, 0.95):
        assert np.array_equal(a.var[level][:148], b.var[level][:148])
        assert not np.allclose(a.var[level][148:], b.var[level][148:])
    assert np.array_equal(a.pnl[:147], b.pnl[:147])


def test_garch_99pct_var_passes_both_tests_on_real_data(sp500, ewma_report):
    # GJR-GARCH filtering (script defaults: Student-t fit, refit every 21 days) at window 1000:
    # 47 exceedances against 40.3 expected and no clustering, where EWMA's 99% exceedances
    # cluster (Christoffersen p 0.008 at window 500, 0.041 at window 1000).
    report = vb.run_backtest(*sp500, method="garch", window=1000).report()
    r99 = report["0.99"]

    assert report["days"] == 4030
    assert r99["kupiec_p"] > 0.05
    assert r99["christoffersen_p"] > 0.05
    assert r99["pass"]
    assert report["0.95"]["pass"]
    assert r99["christoffersen_p"] > ewma_report["0.99"]["christoffersen_p"]
