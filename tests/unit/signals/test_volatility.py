"""IV rank and percentile, point in time, and the surface's context on a known chain."""

import math

import numpy as np
import pytest

from tests.unit.conftest import MORNING, make_market
from thetadesk.signals.volatility import (
    iv_percentile,
    iv_rank,
    rolling_iv_rank,
    surface_context,
)


def test_iv_rank_and_percentile_by_hand():
    h = [0.10, 0.20, 0.30, 0.15, 0.25]
    assert iv_rank(h, min_observations=3) == pytest.approx(75.0)  # (0.25-0.10)/(0.30-0.10)
    assert iv_percentile(h, min_observations=3) == pytest.approx(75.0)  # 3 of 4 below 0.25
    assert iv_rank(h, current=0.40, min_observations=3) == pytest.approx(100.0)
    assert iv_rank(h, current=0.05, min_observations=3) == pytest.approx(0.0)
    assert iv_percentile(h, current=0.05, min_observations=3) == 0.0
    assert math.isnan(iv_rank(h, min_observations=10))  # not enough history
    assert math.isnan(iv_rank([0.2] * 30))  # a flat year has no range
    assert iv_rank([0.1, np.nan, 0.3, 0.2], min_observations=3) == pytest.approx(50.0)
    # Only the last ``lookback`` observations count.
    assert iv_rank([0.90, 0.10, 0.30, 0.20], lookback=3, min_observations=3) == \
        pytest.approx(50.0)
    with pytest.raises(ValueError, match="lookback"):
        iv_rank(h, lookback=1)


def test_rolling_rank_uses_only_the_past():
    rng = np.random.default_rng(4)
    h = 0.2 + 0.05 * rng.standard_normal(300)
    rank, pct = rolling_iv_rank(h, lookback=100, min_observations=20)
    assert np.isnan(rank[:19]).all()
    assert rank[150] == pytest.approx(iv_rank(h[51:151], lookback=100))
    changed = h.copy()
    changed[200:] = 0.9
    rank2, pct2 = rolling_iv_rank(changed, lookback=100, min_observations=20)
    np.testing.assert_array_equal(rank[:200], rank2[:200])
    np.testing.assert_array_equal(pct[:200], pct2[:200])
    assert rank2[200] == 100.0


def test_the_rolling_figures_equal_the_scalar_ones_on_every_prefix():
    rng = np.random.default_rng(8)
    h = 0.2 + 0.05 * rng.standard_normal(400)
    h[[5, 60, 61, 250]] = np.nan  # days without a usable IV
    h[300:310] = 0.2  # ties with the current value
    rank, pct = rolling_iv_rank(h, lookback=252, min_observations=20)
    for i in range(len(h)):
        window = h[max(0, i - 251): i + 1]
        want_rank = iv_rank(window, lookback=252, min_observations=20)
        want_pct = iv_percentile(window, lookback=252, min_observations=20)
        assert (math.isnan(rank[i]) and math.isnan(want_rank)) or rank[i] == want_rank, i
        assert (math.isnan(pct[i]) and math.isnan(want_pct)) or pct[i] == want_pct, i
    assert np.isnan(rank[5])  # no IV that day
    assert rolling_iv_rank([], lookback=10)[0].shape == (0,)


def test_surface_context_on_the_simulated_chain():
    market = make_market()
    chain = market.chain("SPY", MORNING, min_dte=20, max_dte=70)
    expiry = chain.nearest_expiry(35, min_dte=21)
    ctx = surface_context(chain, expiry)
    assert ctx.notes == ()
    assert 0.05 < ctx.atm_iv < 0.6
    assert ctx.skew_25d > 0  # the simulator's equity skew: puts richer than calls
    assert math.isfinite(ctx.term_slope)
    assert ctx.iv_minus_realised(ctx.atm_iv - 0.03) == pytest.approx(0.03)
    assert math.isnan(ctx.iv_minus_realised(float("nan")))
    last = chain.expiries()[-1]
    assert "no later expiry" in surface_context(chain, last).notes[0]
    d = ctx.as_dict()
    assert d["expiry"] == expiry.isoformat()
