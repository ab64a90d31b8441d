"""Named stress scenarios and the portfolio's P&L in each (full revaluation).

A ``StressScenario`` moves spot and implied volatility by RELATIVE shocks: ``spot_shock=-0.10``
is spot x 0.90, ``vol_shock=+0.50`` is every implied volatility x 1.50. A shock is one number
for every underlying, or a mapping per underlying symbol (``"*"`` sets the default for
underlyings not named; without it they are not shocked; names the portfolio does not hold are
ignored, so one configured set serves any book). ``stress_table(..., betas=...)`` scales a
single-number spot shock by each underlying's beta (an index move applied to a QQQ book);
per-symbol shocks and vol shocks are never scaled. A VIX future (the risk underlying of a VIX
option, ``thetadesk.vix``) moves with the scenario's implied-volatility shock, damped by
``exp(-6 T)`` for its time to expiry, since the index's own change is the VIX's: the
historical days' vol shocks are the VIX's relative change.

Historical days replay the day's S&P 500 close-to-close return and the day's relative change of
the 30-day index implied volatility (VIX, or VXO before 1990) as uniform shocks. Sources are in
the comments of ``DEFAULT_SCENARIOS``; the days inside the ``arch`` S&P 500 data (1999-2018)
and its VIX data (2014-2018) are checked against it in ``tests/unit/risk/test_scenarios.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from thetadesk.errors import DataError
from thetadesk.risk.portfolio import Portfolio, revalue
from thetadesk.vix import VIX_ROOT, forward_shock, is_forward_symbol

__all__ = ["DEFAULT_SCENARIOS", "StressScenario", "scenarios_from_config", "stress_table"]

Shock = float | Mapping[str, float]


def _check_shock(name: str, field: str, value: object) -> Shock:
    def number(key: str, v: object) -> float:
        where = f"stress scenario {name!r}: {field}" + (f"[{key}]" if key else "")
        if isinstance(v, bool) or not isinstance(v, int | float | np.floating | np.integer):
            raise DataError(f"{where} must be a number (relative, -0.10 is -10%), got {v!r}")
        f = float(v)
        if not math.isfinite(f) or f <= -1.0:
            raise DataError(f"{where} must be finite and > -1 (a relative shock), got {v!r}")
        return f

    if isinstance(value, Mapping):
        if not value:
            raise DataError(f"stress scenario {name!r}: {field} mapping is empty")
        out = {}
        for key, v in value.items():
            if not isinstance(key, str) or not key:
                raise DataError(f"stress scenario {name!r}: {field} keys must be underlying "
                                f"symbols or '*', got {key!r}")
            out[key] = number(key, v)
        return out
    return number("", value)


@dataclass(frozen=True)
class StressScenario:
    """A named shock: ``spot_shock`` and ``vol_shock`` relative (> -1), one number for every
    underlying or a mapping per symbol (``"*"`` for the rest)."""

    name: str
    spot_shock: Shock = 0.0
    vol_shock: Shock = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataError(f"stress scenario name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "spot_shock", _check_shock(self.name, "spot_shock",
                                                            self.spot_shock))
        object.__setattr__(self, "vol_shock", _check_shock(self.name, "vol_shock",
                                                           self.vol_shock))
        if not isinstance(self.description, str):
            raise DataError(f"stress scenario {self.name!r}: description must be a string, "
                            f"got {self.description!r}")

    def factors(self, symbols: Sequence[str], betas: Mapping[str, float] | None = None,
                as_of: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Spot and vol FACTORS (1 + shock) for ``symbols``, in that order. A VIX future
        (``thetadesk.vix.is_forward_symbol``) moves by the scenario's volatility shock (its
        "VIX" entry, else its default) damped by its time to expiry from ``as_of``
        (``thetadesk.vix.forward_shock``); its options' implied volatility stays."""
        spot = np.array([_shock_for(self.spot_shock, s) for s in symbols])
        futures = [i for i, s in enumerate(symbols) if is_forward_symbol(s)]
        if betas is not None and not isinstance(self.spot_shock, Mapping):
            missing = [s for i, s in enumerate(symbols) if s not in betas and i not in futures]
            if missing:
                raise DataError(f"stress scenario {self.name!r}: no beta for "
                                f"{', '.join(missing)}")
            spot = spot * np.array([float(betas.get(s, 1.0)) for s in symbols])
        vol = np.array([_shock_for(self.vol_shock, s) for s in symbols])
        for i in futures:
            if as_of is None:
                raise DataError(f"stress scenario {self.name!r}: {symbols[i]} is a VIX future; "
                                "its shock needs the portfolio's time")
            spot[i] = forward_shock(_shock_for(self.vol_shock, VIX_ROOT), symbols[i], as_of)
            vol[i] = 0.0
        spot_factor = 1.0 + spot
        if (spot_factor <= 0.0).any() or not np.isfinite(spot_factor).all():
            raise DataError(f"stress scenario {self.name!r}: the beta-scaled spot shock "
                            f"{spot.tolist()} takes a spot to zero or below")
        return spot_factor, 1.0 + vol


def _shock_for(shock: Shock, symbol: str) -> float:
    if isinstance(shock, Mapping):
        return shock.get(symbol, shock.get("*", 0.0))
    return shock


def _grid() -> list[StressScenario]:
    out = []
    for spot in (0.05, 0.10, 0.20):
        for vol in (0.5, 1.0):
            out.append(StressScenario(
                f"spot -{spot:.0%} IV +{vol:.0%}", -spot, vol,
                f"every underlying {-spot:.0%}, implied volatilities x{1 + vol:g}"))
    return out


DEFAULT_SCENARIOS: tuple[StressScenario, ...] = (
    *_grid(),
    StressScenario("gap up", 0.03, -0.20, "every underlying +3% overnight, IV x0.8"),
    StressScenario("vol crush", 0.0, -0.40, "spot unchanged, implied volatilities x0.6"),
    # Black Monday. S&P 500 close 282.70 (Fri 1987-10-16) -> 224.84: -20.47% (S&P Dow Jones
    # Indices). VIX did not exist; CBOE's reconstructed VXO closed 36.37 -> 150.19 (x4.13, CBOE
    # VXO history). Neither day is in the arch data.
    StressScenario("1987-10-19", 224.84 / 282.70 - 1.0, 150.19 / 36.37 - 1.0,
                   "Black Monday replay: S&P 500 -20.5%, VXO 36.4 -> 150.2"),
    # S&P 500 close 998.01 -> 907.84: -9.03% (arch sp500 data, checked in a test). VIX close
    # 53.11 -> 69.25 (+30.4%, CBOE VIX history; VIX before 2014 is not in the arch data).
    StressScenario("2008-10-15", 907.84 / 998.01 - 1.0, 69.25 / 53.11 - 1.0,
                   "2008 crisis replay: S&P 500 -9.0%, VIX 53.1 -> 69.3"),
    # Covid crash. S&P 500 close 2711.02 (Fri 2020-03-13) -> 2386.13: -11.98%; VIX close
    # 57.83 -> 82.69 (+43.0%), its record close (S&P Dow Jones Indices, CBOE VIX history).
    StressScenario("2020-03-16", 2386.13 / 2711.02 - 1.0, 82.69 / 57.83 - 1.0,
                   "Covid crash replay: S&P 500 -12.0%, VIX 57.8 -> 82.7"),
    # "Volmageddon". S&P 500 close 2762.13 -> 2648.94: -4.10%; VIX close 17.31 -> 37.32
    # (+115.6%); both from the arch sp500 and vix data, checked in a test.
    StressScenario("2018-02-05", 2648.94 / 2762.13 - 1.0, 37.32 / 17.31 - 1.0,
                   "Volmageddon replay: S&P 500 -4.1%, VIX 17.3 -> 37.3"),
)


def stress_table(portfolio: Portfolio, scenarios: Sequence[StressScenario] = DEFAULT_SCENARIOS,
                 horizon_years: float = 0.0,
                 betas: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """``(name, P&L in dollars)`` of each scenario, in order, by full revaluation
    (``revalue``) after ``horizon_years`` (0: an instantaneous shock). Losses are negative.
    With ``betas``, single-number spot shocks are scaled by each underlying's beta."""
    scenarios = tuple(scenarios)
    if not scenarios:
        return []
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise DataError("stress scenario names must be unique")
    symbols = portfolio.symbols
    pairs = [s.factors(symbols, betas, portfolio.as_of) for s in scenarios]
    spot = np.array([p[0] for p in pairs])
    vol = np.array([p[1] for p in pairs])
    pnl = revalue(portfolio.arrays(), spot, vol, horizon_years)
    return [(n, float(v)) for n, v in zip(names, pnl, strict=True)]


_FIELDS = ("spot_shock", "vol_shock", "description")


def scenarios_from_config(config: Mapping[str, object] | Sequence[Mapping[str, object]]
                          ) -> tuple[StressScenario, ...]:
    """Scenarios from user configuration: a mapping ``name -> {spot_shock, vol_shock,
    description}`` or a list of such mappings each with a ``name``. Shocks are relative
    (``-0.1``), a number or a mapping per symbol; at least one shock must be given. Raises
    DataError naming the scenario and the field."""
    items: list[tuple[str, Mapping[str, object]]] = []
    if isinstance(config, Mapping):
        for name, body in config.items():
            items.append((name, body))
    elif isinstance(config, Sequence) and not isinstance(config, str | bytes):
        for i, body in enumerate(config):
            if not isinstance(body, Mapping):
                raise DataError(f"stress scenario #{i} must be a mapping, got {body!r}")
            if "name" not in body:
                raise DataError(f"stress scenario #{i}: missing field 'name'")
            items.append((body["name"], {k: v for k, v in body.items() if k != "name"}))
    else:
        raise DataError(f"stress scenarios must be a mapping or a list, got {config!r}")
    out = []
    for name, body in items:
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"stress scenario name must be a non-empty string, got {name!r}")
        if not isinstance(body, Mapping):
            raise DataError(f"stress scenario {name!r} must be a mapping of "
                            f"{', '.join(_FIELDS)}, got {body!r}")
        unknown = sorted(set(body) - set(_FIELDS), key=str)
        if unknown:
            raise DataError(f"stress scenario {name!r}: unknown field {unknown[0]!r} "
                            f"(expected {', '.join(_FIELDS)})")
        if "spot_shock" not in body and "vol_shock" not in body:
            raise DataError(f"stress scenario {name!r}: give spot_shock or vol_shock")
        out.append(StressScenario(name, body.get("spot_shock", 0.0), body.get("vol_shock", 0.0),
                                  body.get("description", "")))
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"stress scenario {dupes[0]!r} is defined twice")
    return tuple(out)
