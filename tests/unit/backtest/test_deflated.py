"""Specifications of thetadesk.analytics.deflated (PSR and DSR) against hand-worked figures and
the numerical example of Bailey and Lopez de Prado (2014)."""

import math

import pytest

from thetadesk.analytics.deflated import (
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    return_moments,
    trial_variance,
)

# mean 0.005; deviations +-0.005, +-0.015: m2 = 125e-6, sample variance 500e-6 / 3,
# m3 = 0, m4 = 25_625e-12 -> skewness 0, kurtosis 1.64; Sharpe = 0.005 / sqrt(500e-6 / 3)
# = sqrt(0.15)
RETURNS = [0.01, -0.01, 0.02, 0.0]


def phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_return_moments_by_hand():
    m = return_moments(RETURNS)
    assert m["observations"] == 4
    assert m["sharpe"] == pytest.approx(math.sqrt(0.15))
    assert m["skewness"] == pytest.approx(0.0, abs=1e-12)
    assert m["kurtosis"] == pytest.approx(1.64)


def test_psr_by_hand():
    # z = sqrt(0.15) x sqrt(4 - 1) / sqrt(1 - 0 + (1.64 - 1) / 4 x 0.15) = sqrt(0.45 / 1.024)
    psr = probabilistic_sharpe_ratio(math.sqrt(0.15), 4, skewness=0.0, kurtosis=1.64)
    assert psr == pytest.approx(phi(math.sqrt(0.45 / 1.024)))
    assert psr == pytest.approx(0.7463, abs=1e-4)
    assert deflated_sharpe(RETURNS)["psr"] == pytest.approx(psr)


def test_psr_falls_with_negative_skew_and_fat_tails():
    normal = probabilistic_sharpe_ratio(0.1, 250)
    assert probabilistic_sharpe_ratio(0.1, 250, skewness=-3, kurtosis=10) < normal
    # a Sharpe at its benchmark is a coin toss
    assert probabilistic_sharpe_ratio(0.1, 250, benchmark=0.1) == pytest.approx(0.5)


def test_expected_max_sharpe_by_hand():
    # N = 10, V = 1: (1 - g) x Phi^-1(0.9) + g x Phi^-1(1 - 1 / (10 e))
    g = 0.5772156649015329
    z = (1 - g) * 1.2815515655446004 + g * 1.78924
    assert expected_max_sharpe(10, 1.0) == pytest.approx(z, abs=1e-4)
    assert expected_max_sharpe(10, 4.0) == pytest.approx(2 * expected_max_sharpe(10, 1.0))
    assert expected_max_sharpe(1, 1.0) == 0.0


def test_the_papers_numerical_example():
    # Bailey & Lopez de Prado (2014), "A numerical example": annualised SR 2.5 over T = 1250
    # daily returns (250 a year), N = 100 trials whose annualised Sharpe ratios have variance
    # 1/2, skewness -3, kurtosis 10 -> SR0 = 0.1132 (not annualised), DSR = 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), 1250, skewness=-3, kurtosis=10,
                                     benchmark=sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_dsr_of_one_trial_is_the_psr_and_more_trials_deflate_it():
    one = deflated_sharpe(RETURNS, n_trials=1)
    assert one["dsr"] == pytest.approx(one["psr"])
    assert one["expected_max_sharpe"] == 0.0
    few = deflated_sharpe(RETURNS, n_trials=5, trial_sharpe_variance=0.5 * 252)
    many = deflated_sharpe(RETURNS, n_trials=50, trial_sharpe_variance=0.5 * 252)
    assert one["dsr"] > few["dsr"] > many["dsr"]


def test_trial_sharpes_are_annualised_and_every_trial_counts():
    # annualised 1.0, 2.0, 3.0 -> sample variance 1.0 a year -> 1 / 252 per period; the
    # undefined fourth trial counts in N but not in the variance
    out = deflated_sharpe(RETURNS, trial_sharpes=[1.0, 2.0, None, 3.0])
    assert out["n_trials"] == 4
    assert out["trial_sharpe_variance"] == pytest.approx(1 / 252)
    assert out["expected_max_sharpe"] == pytest.approx(expected_max_sharpe(4, 1 / 252))
    assert out["expected_max_sharpe_annual"] == pytest.approx(expected_max_sharpe(4, 1.0))
    m = return_moments(RETURNS)
    assert out["dsr"] == pytest.approx(probabilistic_sharpe_ratio(
        m["sharpe"], 4, skewness=m["skewness"], kurtosis=m["kurtosis"],
        benchmark=out["expected_max_sharpe"]))
    assert out["sharpe_annual"] == pytest.approx(math.sqrt(0.15) * math.sqrt(252))


def test_undefined_inputs_give_none_not_a_guess():
    assert deflated_sharpe(RETURNS)["dsr"] is None  # trials not given
    flat = deflated_sharpe([0.0] * 10, n_trials=3, trial_sharpe_variance=1.0)
    assert (flat["sharpe"], flat["psr"], flat["dsr"]) == (None, None, None)
    assert deflated_sharpe(RETURNS, trial_sharpes=[1.0, None])["dsr"] is None
    assert trial_variance([2.0]) is None
    assert probabilistic_sharpe_ratio(0.5, 1) is None
    # a large Sharpe with strong positive skew: 1 - 3 x 1 + (3 - 1) / 4 < 0
    assert probabilistic_sharpe_ratio(1.0, 100, skewness=3.0, kurtosis=3.0) is None
    with pytest.raises(ValueError, match="whole number"):
        expected_max_sharpe(0, 1.0)
