"""ThetaDesk's configuration: one frozen pydantic model per ``config.yaml`` section.

``load_config`` reads a YAML file, ``parse_config`` takes already-parsed data. Both interpolate
``${NAME}`` from the environment in every string value (``$${`` writes a literal ``${``), then
validate. Every failure is a ``ConfigError`` whose text names the YAML path and the reason,
one line per problem::

    accounts[0].risk.max_loss_per_trade: must be > 0
    strategy.min_dte: must be <= target_dte (35)

Values taken from the environment are treated as secrets: an error never echoes them, and those
that land in free-text fields are registered with ``thetadesk.logging`` so logs redact them.

Units: money in dollars, rates and volatilities as annual decimals (0.16 = 16%), durations in
seconds or calendar days as named, times of day in New York time.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from thetadesk.clock import CALENDAR_FIRST, CALENDAR_LAST, MarketCalendar
from thetadesk.errors import ConfigError
from thetadesk.logging import register_secret
from thetadesk.rates import MAX_RATE, MAX_SPREAD, TBILL_RATE

__all__ = [
    "DEFAULT_CONFIG",
    "AccountConfig",
    "AlpacaAccountConfig",
    "AlpacaDataConfig",
    "BacktestConfig",
    "BreakersConfig",
    "CashInterestConfig",
    "Config",
    "ExitsConfig",
    "FeesConfig",
    "FillModelConfig",
    "LoggingConfig",
    "MarketConfig",
    "NotificationsConfig",
    "ReplayMarketConfig",
    "RiskConfig",
    "RiskReportsConfig",
    "SimMarketConfig",
    "SimRegimesConfig",
    "SimShockConfig",
    "SizingConfig",
    "StrategyConfig",
    "SymbolConfig",
    "VendorDataConfig",
    "load_config",
    "load_config_data",
    "parse_config",
]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"

SYMBOL_PATTERN = r"^[A-Z]{1,6}$"
ACCOUNT_NAME_PATTERN = r"^[a-z0-9_-]{1,32}$"
PROFILE_NAME_PATTERN = r"^[a-z0-9_-]{1,32}$"
DEFAULT_PROFILE = "default"  # the top-level ``strategy`` section, as a profile name
ALL_ACCOUNTS = "all"  # the accounts together: global breakers, risk figures and totals

Loc = tuple[str | int, ...]


def _raise_problems(problems: list[tuple[Loc, str]]) -> None:
    """Report cross-field problems at their own paths (relative to the model that found them)."""
    if problems:
        summary = "; ".join(f"{_format_path(loc)}: {message}" for loc, message in problems)
        context = {"summary": summary, "problems": problems}
        raise PydanticCustomError("cross_field", "{summary}", context)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Lax pydantic reads `true` as 1; a boolean where a number belongs is a mistake.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = _unwrap(cls.model_fields[info.field_name].annotation)
            if annotation is int:
                raise PydanticCustomError("int_type", "Input should be a valid integer")
            if annotation is float:
                raise PydanticCustomError("float_type", "Input should be a valid number")
        return value


_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


def _parse_hhmm(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        match = _HHMM.match(value.strip())
        if match and int(match[1]) < 24 and int(match[2]) < 60:
            return time(int(match[1]), int(match[2]))
    raise PydanticCustomError("time_format", 'must be a time "HH:MM"')


NewYorkTime = Annotated[time, BeforeValidator(_parse_hhmm)]
SymbolName = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]


# What historical replay can serve (thetadesk/adapters/replay.py): the S&P 500 as SPY and the
# NASDAQ Composite as QQQ (index, scale, strike spacing in dollars: the replay lists its own
# strikes, market.symbols.*.strike_step is the simulator's), and starts that leave two months
# of data for expiries.
REPLAY_SERIES = {"SPY": ("sp500", 0.1, 1.0), "QQQ": ("nasdaq", 1.0 / 43.0, 1.0)}
REPLAY_SYMBOLS = frozenset(REPLAY_SERIES)
REPLAY_FIRST = date(2000, 1, 3)
REPLAY_LAST = date(2018, 10, 31)


class SymbolConfig(_Section):
    """One underlying of the simulated market."""

    spot: float = Field(gt=0, description="starting price, dollars")
    vol: float = Field(gt=0, le=3, description="annualised volatility (0.16 = 16%)")
    dividend_yield: float = Field(ge=0, le=0.2, description="continuous annual dividend yield")
    strike_step: float = Field(
        gt=0, description="spacing of listed strikes, dollars (source: replay lists its own, "
        "$1 for SPY and QQQ)")


def _triple(value: Any) -> Any:
    # One number per regime; pydantic's own tuple errors would say "at most 3 items".
    if (not isinstance(value, list | tuple) or len(value) != 3
            or any(isinstance(v, bool) for v in value)):
        raise PydanticCustomError(
            "regime_triple", "must be a list of 3 numbers: [calm, normal, stressed]"
        )
    return value


def _triple_of(**bounds: float) -> Any:
    """A list of 3 numbers, one per regime, each within ``bounds`` (Field keywords)."""
    number = Annotated[float, Field(**bounds)]
    return Annotated[tuple[number, number, number], BeforeValidator(_triple)]


class SimRegimesConfig(_Section):
    """Regimes and market jumps of the simulated market (``SimRegimes``; defaults are its own).

    Lists are per regime, ``[calm, normal, stressed]``.
    """

    transition: Annotated[
        tuple[_triple_of(ge=0, le=1), _triple_of(ge=0, le=1), _triple_of(ge=0, le=1)],
        BeforeValidator(_triple),
    ] = Field(
        default=((0.980, 0.020, 0.000), (0.015, 0.975, 0.010), (0.000, 0.040, 0.960)),
        description="row i: chances of the next session's regime after regime i; rows sum to 1",
    )
    vol: _triple_of(gt=0, le=5) = Field(
        default=(0.75, 1.00, 1.70), description="x the realised (GARCH) volatility"
    )
    jump_probability: _triple_of(ge=0, le=1) = Field(
        default=(0.004, 0.012, 0.04), description="chance of a market jump per session"
    )
    skew: _triple_of(ge=0, le=5) = Field(default=(0.80, 1.00, 1.50), description="x the put skew")
    term_slope: _triple_of(ge=-1, le=1) = Field(
        default=(0.05, 0.03, -0.07),
        description="ATM IV slope per unit ln(T / 30 days); negative: inverted",
    )
    vrp: _triple_of(ge=-0.5, le=2) = Field(
        default=(0.30, 0.25, 0.20), description="implied over forecast volatility (0.25 = +25%)"
    )
    spread: _triple_of(gt=0, le=20) = Field(
        default=(0.8, 1.0, 2.2), description="x the option bid-ask half-spread"
    )
    volume: _triple_of(gt=0, le=20) = Field(
        default=(0.8, 1.0, 1.8), description="x the option volume"
    )
    stress_after_jump: float = Field(
        default=0.5, ge=0, le=1, description="chance that the session after a jump is stressed"
    )
    jump_mean: float = Field(
        default=-2.5, ge=-20, le=0, description="mean opening gap of a jump, in jump_vol units"
    )
    jump_sd: float = Field(default=1.0, ge=0, le=10, description="its standard deviation")
    jump_vol: float = Field(
        default=1.5, ge=0, le=10, description="the jump unit, in base daily volatilities"
    )

    @model_validator(mode="after")
    def _check_transition(self) -> SimRegimesConfig:
        problems: list[tuple[Loc, str]] = []
        for i, row in enumerate(self.transition):
            total = sum(row)
            if abs(total - 1.0) > 1e-9:
                problems.append(
                    (("transition", i), f"must sum to 1, got {_number(round(total, 9))}")
                )
        _raise_problems(problems)
        return self


SessionDate = date  # a field named ``date`` cannot be annotated ``date``


class SimShockConfig(_Section):
    """A scheduled shock of the simulated market (``SimShock``): a crash scenario."""

    date: SessionDate = Field(description="the NYSE session it happens on, after the first one")
    gap: float = Field(gt=-0.5, lt=0.5,
                       description="opening gap on top of the usual one (-0.10: 10% down)")
    vol_multiplier: float = Field(default=1.0, ge=1, le=5,
                                  description="the day's variance times this squared")


class SimMarketConfig(_Section):
    """Realism of the simulated market (``SimMarket``); ``source: replay`` ignores it."""

    correlation: float = Field(
        default=0.85, ge=0, le=1, description="correlation of any two symbols' returns"
    )
    daily_expiries: tuple[SymbolName, ...] | None = Field(
        default=None,
        description="roots listing an expiry every session for two weeks, each one of "
        "market.symbols; absent: SPY and QQQ",
    )
    regimes: SimRegimesConfig = Field(default_factory=SimRegimesConfig)
    shocks: tuple[SimShockConfig, ...] = Field(
        default=(), description="scheduled shocks (e.g. a -10% gap with a volatility spike)")
    vix_options: StrictBool = Field(
        default=False,
        description="also list the VIX index and its monthly options (Black-76 on mean-reverting "
        "futures, thetadesk.vix), for hedging.tail.vix_calls")


class ReplayMarketConfig(_Section):
    """Realism of the historical replay (``HistoricalReplay``); ``source: sim`` ignores it.

    Defaults are the replay's own documented figures (``thetadesk/adapters/replay.py``)."""

    atm_vix_ratio: float = Field(
        default=0.90, ge=0.5, le=1.5,
        description="30-day at-the-money implied volatility / VIX (the VIX is a variance-swap "
        "level that includes the put skew, so it sits above ATM; 1.0: ATM at the VIX)")
    spot_vol_beta: float = Field(
        default=-4.94, ge=-15, le=0,
        description="d ln(implied volatility) / d ln(index) within the day, from the previous "
        "close (the VIX:SPX beta); 0: implied volatility frozen at the previous close all day")


class VendorDataConfig(_Section):
    """How ThetaDesk spends a market-data vendor's request budget and what it refuses to trade.

    The budget is per run: the supervisor splits it evenly between the processes that read
    the market (one per symbol, one per account, the risk actor), since each keeps its own
    client."""

    requests_per_minute: int = Field(
        default=5, ge=1, le=100_000,
        description="requests per minute the plan allows (Polygon's free tier: 5)")
    cache_ttl_s: float = Field(
        default=15.0, ge=0, le=3600, description="seconds a chain or quote answer is reused")
    max_reject_fraction: float = Field(
        default=0.2, ge=0, le=1,
        description="a chain with more unusable rows than this share is not traded on")
    max_quote_age_s: float = Field(
        default=900.0, gt=0, le=86_400,
        description="a quote older than this (by its own timestamp) is rejected as stale")


class AlpacaDataConfig(VendorDataConfig):
    """Alpaca's option data (``market.source: alpaca``)."""

    requests_per_minute: int = Field(default=200, ge=1, le=100_000,
                                     description="Alpaca's basic plan: 200 a minute")
    feed: Literal["indicative", "opra"] = Field(
        default="indicative",
        description="indicative: free, delayed; opra: real time (a paid subscription)")
    paper: StrictBool = Field(
        default=True,
        description="whether ALPACA_API_KEY is a paper key: open interest comes from the "
        "trading API's contracts list, on the paper or the live host to match the key")
    open_interest: StrictBool = Field(
        default=True,
        description="read open interest from the contracts list (one request per chain "
        "window every few hours); false: chains carry none")


LIVE_SOURCES = ("polygon", "alpaca")


class MarketConfig(_Section):
    """Where prices come from and how simulated time moves."""

    source: Literal["sim", "replay", "polygon", "alpaca"] = Field(
        description="sim: the seeded simulator; replay: real S&P 500 and NASDAQ Composite "
        "history (1999-2018, VIX from 2014) from the arch package, traded as SPY (a tenth of "
        "the S&P 500) and QQQ (the NASDAQ Composite / 43); polygon or "
        "alpaca: live option chains from the vendor (keys from the environment), ticks on the "
        "wall clock"
    )
    polygon: VendorDataConfig = Field(default_factory=VendorDataConfig)
    alpaca: AlpacaDataConfig = Field(default_factory=AlpacaDataConfig)
    start: date = Field(
        ge=CALENDAR_FIRST,
        le=CALENDAR_LAST,
        description="first simulated session; a non-session date means the next session",
    )
    tick_seconds: int = Field(ge=1, le=3600, description="market seconds between ticks")
    pace: float = Field(gt=0, description="simulated seconds per wall-clock second (scripts/run)")
    rate: float = Field(ge=-0.05, le=0.5, description="risk-free rate, continuous, annual")
    symbols: dict[SymbolName, SymbolConfig] = Field(min_length=1)
    sim: SimMarketConfig = Field(default_factory=SimMarketConfig)
    replay: ReplayMarketConfig = Field(default_factory=ReplayMarketConfig)

    @property
    def live(self) -> bool:
        """True when prices come from a vendor: ticks follow the wall clock (``start`` and
        ``pace`` are for simulations only)."""
        return self.source in LIVE_SOURCES

    @model_validator(mode="after")
    def _check_replay(self) -> MarketConfig:
        problems: list[tuple[Loc, str]] = []
        if self.source != "replay":
            known = ", ".join(sorted(self.symbols))
            for j, symbol in enumerate(self.sim.daily_expiries or ()):
                if symbol in self.sim.daily_expiries[:j]:
                    problems.append((("sim", "daily_expiries", j), f"duplicate symbol '{symbol}'"))
                elif symbol not in self.symbols:
                    problems.append(
                        (
                            ("sim", "daily_expiries", j),
                            f"unknown symbol '{symbol}' (market.symbols has: {known})",
                        )
                    )
            problems.extend(self._shock_problems())
            _raise_problems(problems)
            return self
        if self.sim.shocks:
            problems.append((("sim", "shocks"), "shocks are for the simulator (source: sim)"))
        for name in self.symbols:
            if name not in REPLAY_SYMBOLS:
                problems.append((
                    ("symbols", name),
                    "replay has SPY (the S&P 500) and QQQ (the NASDAQ Composite) only",
                ))
        if not REPLAY_FIRST <= self.start <= REPLAY_LAST:
            problems.append((("start",), f"replay data covers {REPLAY_FIRST} to {REPLAY_LAST}"))
        _raise_problems(problems)
        return self


    def _shock_problems(self) -> list[tuple[Loc, str]]:
        if not self.sim.shocks:
            return []
        if self.live:
            return [(("sim", "shocks"), "shocks are for the simulator (source: sim)")]
        calendar = MarketCalendar()
        first = self.start if calendar.is_session(self.start) else calendar.next_session(
            self.start)
        problems: list[tuple[Loc, str]] = []
        seen: set[date] = set()
        for j, shock in enumerate(self.sim.shocks):
            where = ("sim", "shocks", j, "date")
            if shock.date in seen:
                problems.append((where, f"two shocks on {shock.date}"))
            elif not CALENDAR_FIRST <= shock.date <= CALENDAR_LAST or not calendar.is_session(
                    shock.date):
                problems.append((where, f"{shock.date} is not an NYSE session"))
            elif shock.date <= first:
                problems.append((where, f"{shock.date} must come after the first session "
                                        f"({first}), which opens at the starting spot"))
            seen.add(shock.date)
        return problems


class LadderConfig(_Section):
    """Working entries: start at mid, a tick toward natural every step, then cancel."""

    enabled: StrictBool = False
    step_minutes: int = Field(default=5, ge=1, le=120, description="minutes between steps")
    tick: float = Field(default=0.01, gt=0, le=1, description="price step, dollars per share")
    max_steps: int = Field(default=5, ge=0, le=100,
                           description="steps before an unfilled order is cancelled")


class VrpEntryConfig(_Section):
    """The plain strategy's volatility-risk-premium entry rule (``thetadesk/signals/vrp.py``):
    enter only while the ATM implied volatility of the expiry sold is rich against a
    point-in-time forecast of the volatility to that expiry."""

    model: Literal["har", "garch", "realised"] = Field(
        default="har", description="HAR-RV, GJR-GARCH(1,1), or the trailing 21-session "
        "realised volatility")
    min_ratio: float | None = Field(default=None, gt=0, le=5,
                                    description="least implied / forecast")
    min_difference: float | None = Field(default=None, ge=-1, le=1,
                                         description="least implied - forecast, vol points "
                                         "as a decimal (0.02 = 2 points)")

    @property
    def active(self) -> bool:
        return self.min_ratio is not None or self.min_difference is not None


class StrategyConfig(_Section):
    """What to trade and when to enter."""

    # bull_put_credit: the plain first strategy (thetadesk/symbol.py); adaptive: the decision
    # layer picks the structure from the regime and IV rank (the decision section).
    kind: Literal["bull_put_credit", "adaptive"]
    target_dte: int = Field(ge=1, le=365, description="calendar days to expiry to aim for")
    min_dte: int = Field(ge=0, le=365, description="fewest calendar days to expiry to enter")
    short_delta: float = Field(gt=0, lt=0.5, description="absolute delta of the short strike")
    width: float = Field(gt=0, description="strike distance between the legs, dollars (unless "
                         "width_pct or width_sd is given)")
    width_pct: float | None = Field(
        default=None, gt=0, le=20,
        description="the plain strategy's width as a percent of spot (1.5 = 1.5%)")
    width_sd: float | None = Field(
        default=None, gt=0, le=3,
        description="the plain strategy's width as a multiple of the expected move to expiry "
        "(spot x ATM IV x sqrt(years))")
    min_iv: float = Field(ge=0, description="least ATM implied vol to enter (0.12 = 12%)")
    min_credit_fraction: float = Field(ge=0, lt=1,
                                       description="least net credit / width (0: no floor)")
    entry_start: NewYorkTime = Field(description="earliest entry, New York time")
    entry_end: NewYorkTime = Field(description="latest entry, New York time")
    ladder: LadderConfig = Field(
        default_factory=LadderConfig,
        description="the plain strategy's working entries from mid (the adaptive strategy's: "
        "decision.timing.ladder)")
    trend_sma: int | None = Field(
        default=None, ge=2, le=400,
        description="the plain strategy enters only while spot is at or above the average of "
        "the last N daily closes (null: no trend filter)")
    vrp: VrpEntryConfig = Field(
        default_factory=VrpEntryConfig,
        description="the plain strategy's volatility-risk-premium entry rule (off unless "
        "min_ratio or min_difference is given)")

    @model_validator(mode="after")
    def _check_ranges(self) -> StrategyConfig:
        problems: list[tuple[Loc, str]] = []
        if self.min_dte > self.target_dte:
            problems.append((("min_dte",), f"must be <= target_dte ({self.target_dte})"))
        if self.entry_end <= self.entry_start:
            problems.append(
                (("entry_end",), f"must be after entry_start ({self.entry_start:%H:%M})")
            )
        if self.width_pct is not None and self.width_sd is not None:
            problems.append((("width_sd",), "give width_pct or width_sd, not both"))
        if self.kind == "adaptive":
            plain_only = {"width_pct": self.width_pct is not None,
                          "width_sd": self.width_sd is not None,
                          "trend_sma": self.trend_sma is not None,
                          "ladder": self.ladder.enabled, "vrp": self.vrp.active}
            for key in (k for k, used in plain_only.items() if used):
                problems.append(((key,), (
                    "is for the plain strategy (kind: bull_put_credit); the adaptive "
                    "strategy takes its own from the decision section")))
        _raise_problems(problems)
        return self


class RegimeRulesConfig(_Section):
    """Trend x volatility regimes with hysteresis (thetadesk/signals/regime.py)."""

    fast: int = Field(default=20, ge=1, le=250, description="sessions in the fast average")
    slow: int = Field(default=50, ge=2, le=250, description="sessions in the slow average")
    adx_period: int = Field(default=14, ge=2, le=100)
    adx_trend: float = Field(default=25.0, ge=0, le=100,
                             description="ADX from which a new trend is recognised")
    adx_range: float = Field(default=20.0, ge=0, le=100,
                             description="ADX below which a trend in force becomes a range")
    low_enter: float = Field(default=20.0, ge=0, le=100)
    low_exit: float = Field(default=30.0, ge=0, le=100)
    high_enter: float = Field(default=80.0, ge=0, le=100)
    high_exit: float = Field(default=70.0, ge=0, le=100)
    confirm: int = Field(default=3, ge=1, le=20,
                         description="sessions a new regime must hold before it takes effect")

    @model_validator(mode="after")
    def _bands(self) -> RegimeRulesConfig:
        from thetadesk.signals.regime import RegimeRules

        try:
            RegimeRules(**self.model_dump())
        except ValueError as exc:
            raise PydanticCustomError("regime_rules", "{reason}", {"reason": str(exc)}) from None
        return self


class SelectorConfig(_Section):
    credit_min_rank: float = Field(default=50.0, ge=0, le=100,
                                   description="IV rank from which premium is sold")
    debit_max_rank: float = Field(default=25.0, ge=0, le=100,
                                  description="IV rank up to which premium is bought")

    @model_validator(mode="after")
    def _order(self) -> SelectorConfig:
        if not self.debit_max_rank < self.credit_min_rank:
            _raise_problems([(("debit_max_rank",),
                              f"must be below credit_min_rank ({self.credit_min_rank:g})")])
        return self


class TimingConfig(_Section):
    windows: tuple[tuple[NewYorkTime, NewYorkTime], ...] = Field(
        default=((time(10, 0), time(11, 30)), (time(14, 0), time(15, 30))), min_length=1,
        description="entry windows, New York time, in order: [[start, end], ...]")
    close_buffer: int = Field(default=30, ge=0, le=390,
                              description="no entry in the session's last N minutes")
    max_width_fraction: float = Field(default=0.25, gt=0, le=2,
                                      description="most bid/ask width of the spread / its mid")
    ladder: LadderConfig = Field(default_factory=LadderConfig)
    volume_spike: float | None = Field(
        default=None, gt=0, le=20,
        description="the latest 5-minute bar's volume at least this multiple of its 20 bars' "
        "average (needs a source with volume: Polygon); null: not required")
    min_alignment: float | None = Field(
        default=None, ge=-1, le=1,
        description="a bull or bear structure needs the timeframes' alignment at least this "
        "far its way (-1..1); null: recorded, not required")

    @model_validator(mode="after")
    def _windows(self) -> TimingConfig:
        from thetadesk.signals.timing import EntryTiming

        try:
            EntryTiming(self.windows, self.close_buffer, self.max_width_fraction,
                        self.volume_spike)
        except ValueError as exc:
            _raise_problems([(("windows",), str(exc))])
        return self


class BlackoutConfig(_Section):
    before_hours: float = Field(ge=0, le=24 * 14)
    after_hours: float = Field(ge=0, le=24 * 14)


def _default_blackouts() -> dict[str, BlackoutConfig]:
    return {"fomc": BlackoutConfig(before_hours=24, after_hours=2),
            "cpi": BlackoutConfig(before_hours=18, after_hours=1),
            "jobs": BlackoutConfig(before_hours=18, after_hours=1),
            "earnings": BlackoutConfig(before_hours=24, after_hours=24)}


class EventsConfig(_Section):
    """No new entries around scheduled events (thetadesk/signals/events.py)."""

    enabled: StrictBool = True
    shipped: StrictBool = Field(default=True, description="use the shipped FOMC/CPI/jobs dates")
    files: tuple[Path, ...] = Field(default=(), description="more events files, same format")
    blackout: dict[Literal["fomc", "cpi", "jobs", "earnings"], BlackoutConfig] = Field(
        default_factory=_default_blackouts)


class RegimeParamsConfig(_Section):
    size: float | None = Field(default=None, gt=0, le=2,
                               description="multiplies the account's budget per trade")
    short_delta: float | None = Field(default=None, gt=0, lt=0.5)
    target_dte: int | None = Field(default=None, ge=1, le=365)
    width: float | None = Field(default=None, gt=0)
    take_profit: float | None = Field(default=None, gt=0, le=1,
                                      description="close at this fraction of max profit")
    stop_multiple: float | None = Field(default=None, gt=0, le=10,
                                        description="stop at this multiple of the premium")
    strategies: tuple[Literal["bull_put_credit", "bear_call_credit", "iron_condor",
                              "bull_call_debit", "bear_put_debit"], ...] | None = None


_TRENDS, _VOLATILITIES = ("up", "down", "range"), ("low", "normal", "high")
REGIME_KEYS = (*_TRENDS, *_VOLATILITIES, *(f"{t}/{v}" for t in _TRENDS for v in _VOLATILITIES))


class DecisionConfig(_Section):
    """The adaptive strategy's decision layer (strategy.kind: adaptive)."""

    history_sessions: int = Field(default=300, ge=60, le=2000,
                                  description="sessions of daily history read for the regime")
    debit_delta: float = Field(default=0.45, gt=0, lt=1,
                               description="|delta| of a debit spread's long leg")
    max_debit_fraction: float = Field(default=0.6, gt=0, lt=1,
                                      description="most a debit spread may cost / its width")
    min_pop: float = Field(default=0.0, ge=0, lt=1,
                           description="least probability of profit of a candidate")
    regime: RegimeRulesConfig = Field(default_factory=RegimeRulesConfig)
    selector: SelectorConfig = Field(default_factory=SelectorConfig)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    regimes: dict[str, RegimeParamsConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _regime_keys(self) -> DecisionConfig:
        bad = [k for k in self.regimes if k not in REGIME_KEYS]
        if bad:
            _raise_problems([(("regimes", k), "not a regime key: a trend (up, down, range), a "
                              "volatility (low, normal, high) or trend/volatility") for k in bad])
        return self


class RollConfig(_Section):
    """Rolling a tested credit spread out in time and away in strike (thetadesk.positions)."""

    enabled: StrictBool = False
    when_short_delta: float = Field(default=0.40, gt=0, lt=1,
                                    description="a short leg's |delta| that counts as tested")
    target_dte: int = Field(default=35, ge=1, le=365, description="the new expiry's DTE target")
    short_delta: float = Field(default=0.25, gt=0, lt=0.5, description="the new short |delta|")
    max_debit: float = Field(default=0.20, ge=0, le=100,
                             description="most the roll may cost net, dollars per share")
    max_rolls: int = Field(default=1, ge=1, le=10, description="rolls in one chain")


class RepairConfig(_Section):
    """Size repair, each at most once per position."""

    reduce_at_loss: float | None = Field(
        default=None, gt=0, lt=1, description="loss / max loss at which part is closed")
    reduce_fraction: float = Field(default=0.5, gt=0, lt=1, description="share closed")
    add_at_profit: float | None = Field(
        default=None, gt=0, lt=1, description="profit / max profit at which more is opened")
    add_fraction: float = Field(default=0.5, gt=0, le=2, description="of the opened quantity")


class StructureExitsConfig(_Section):
    """One structure's own exit set (``exits.structures.<kind>``): only the keys given replace
    the ``exits:`` section's (``stop_multiple: null`` there means no stop for it)."""

    take_profit: float = Field(default=0.75, gt=0, le=1,
                               description="fraction of max profit taken")
    stop_multiple: float | None = Field(
        default=None, gt=0, description="loss, as a multiple of the premium; null: no stop")
    close_dte: int = Field(default=7, ge=0, description="close at or below this many DTE")
    hold_to_expiry: StrictBool = False
    min_close_value: float | None = Field(default=None, ge=0, le=5)
    ladder: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = Field(default=(), max_length=9)
    trail: float | None = Field(default=None, gt=0, lt=1)


class ExitsConfig(_Section):
    """When an open spread is closed, scaled out of, rolled or repaired."""

    take_profit: float = Field(gt=0, le=1, description="fraction of max profit taken")
    stop_multiple: float | None = Field(
        gt=0, description="loss, as a multiple of the credit, to stop at; null: no per-trade "
        "stop (the portfolio's loss limits and breakers remain)")
    close_dte: int = Field(ge=0, description="close at or below this many days to expiry")
    min_close_value: float | None = Field(
        default=None, ge=0, le=5,
        description="a credit spread worth at most this (dollars per share at mid) to buy back "
        "is left to expire rather than closed by a time exit, take profit or trail")
    structures: dict[Literal["bull_put_credit", "bear_call_credit", "iron_condor",
                             "bull_call_debit", "bear_put_debit"],
                     StructureExitsConfig] = Field(
        default_factory=dict, description="per-structure exit sets: only the keys given differ")
    ladder: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = Field(
        default=(), max_length=9,
        description="earlier profit rungs (fractions of max profit, ascending, below "
                    "take_profit); the quantity is split across them and take_profit")
    trail: float | None = Field(
        default=None, gt=0, lt=1,
        description="after a rung: close the rest when profit falls this far below its peak")
    stop_on_breach: StrictBool = Field(
        default=False, description="close when the underlying crosses a short strike")
    short_delta_stop: float | None = Field(
        default=None, gt=0, lt=1, description="close when a short leg's |delta| reaches this")
    hold_to_expiry: StrictBool = Field(
        default=False, description="true: no time exit, positions may settle at expiry")
    roll: RollConfig = Field(default_factory=RollConfig)
    repair: RepairConfig = Field(default_factory=RepairConfig)

    @model_validator(mode="after")
    def _check_ladder(self) -> ExitsConfig:
        problems: list[tuple[Loc, str]] = []
        rungs = (*self.ladder, self.take_profit)
        if any(rungs[i + 1] <= rungs[i] for i in range(len(rungs) - 1)):
            problems.append((("ladder",), "rungs must ascend and stay below take_profit "
                             f"({self.take_profit:g}), got {list(self.ladder)}"))
        for kind, own in self.structures.items():
            given = own.model_fields_set
            tp = own.take_profit if "take_profit" in given else self.take_profit
            ladder = own.ladder if "ladder" in given else tuple(r for r in self.ladder if r < tp)
            rungs = (*ladder, tp)
            if any(rungs[i + 1] <= rungs[i] for i in range(len(rungs) - 1)):
                problems.append((("structures", kind, "ladder"), (
                    f"rungs must ascend and stay below take_profit ({tp:g}), got "
                    f"{list(ladder)}")))
        if (self.short_delta_stop is not None and self.roll.enabled
                and self.short_delta_stop <= self.roll.when_short_delta):
            problems.append((("short_delta_stop",), (
                f"must be above roll.when_short_delta ({self.roll.when_short_delta:g}), or "
                "the stop fires before a roll could")))
        _raise_problems(problems)
        return self


class DeltaBandConfig(_Section):
    """The beta-weighted delta band the hedging actor keeps each account in."""

    band: float = Field(default=150, gt=0, description="half-width, SPY share-equivalents")
    target: float = Field(default=0, description="the middle hedges go back to")
    instrument: Literal["shares", "options"] = "shares"
    lot: int = Field(default=100, ge=1, le=10_000, description="shares per round lot")
    option_delta: float = Field(default=0.30, gt=0, lt=1,
                                description="|delta| of the options bought (instrument options)")
    option_dte: int = Field(default=30, ge=1, le=365, description="their DTE target")
    min_interval_minutes: float = Field(default=30, ge=0, le=24 * 60,
                                        description="least time between two delta hedges")


class TailHedgeConfig(_Section):
    """Crash protection bought with a share of the premium collected."""

    premium_fraction: float = Field(default=0.0, ge=0, le=1,
                                    description="of the credit collected spent on protection")
    put_delta: float = Field(default=0.10, gt=0, lt=0.5, description="|delta| of the puts")
    dte: int = Field(default=60, ge=7, le=365, description="DTE target of a new put")
    roll_dte: int = Field(default=21, ge=0, le=364, description="roll puts at this DTE")
    vix_calls: StrictBool = Field(
        default=False, description="also VIX calls, where the data source lists them")
    vix_call_share: float = Field(
        default=0.25, ge=0, le=1,
        description="of the protection budget spent on VIX calls (vix_calls), the rest on puts")
    vix_call_delta: float = Field(
        default=0.30, gt=0, lt=1, description="delta of the VIX calls against their future")
    vix_call_dte: int = Field(default=60, ge=7, le=365,
                              description="DTE target of a new VIX call (rolled at roll_dte)")
    max_contracts: int = Field(default=10, ge=1, le=1000, description="per purchase")

    @model_validator(mode="after")
    def _check_roll(self) -> TailHedgeConfig:
        problems: list[tuple[Loc, str]] = []
        if self.roll_dte >= self.dte:
            problems.append((("roll_dte",), f"must be below dte ({self.dte})"))
        if self.roll_dte >= self.vix_call_dte:
            problems.append((("vix_call_dte",), f"must be above roll_dte ({self.roll_dte})"))
        _raise_problems(problems)
        return self


class GammaScalpConfig(_Section):
    """Delta-hedging the tail book's long options (puts, VIX calls) with the hedge symbol's
    shares, so that their gamma buys low and sells high as the market swings."""

    enabled: StrictBool = False
    band_shares: float = Field(
        default=50, gt=0, le=100_000,
        description="half-width: rebalance when the tail options' beta-weighted delta plus "
        "the scalp's shares leaves it (SPY share-equivalents)")
    min_interval_minutes: float = Field(default=30, ge=0, le=24 * 60,
                                        description="least time between two scalp trades")


class DynamicHedgeConfig(_Section):
    """How the band narrows and the tail budget grows with risk (0 at ``from``, 1 at full)."""

    var_usage_from: float = Field(default=0.5, ge=0, lt=1,
                                  description="99% VaR / its limit where tightening starts")
    iv_ratio_from: float = Field(default=1.25, ge=1, le=5,
                                 description="ATM IV / configured vol where tightening starts")
    iv_ratio_full: float = Field(default=2.0, gt=1, le=10, description="... and is full")
    band_at_full: float = Field(default=0.5, gt=0, le=1, description="x the band at full")
    tail_at_full: float = Field(default=2.0, ge=1, le=10, description="x premium_fraction")

    @model_validator(mode="after")
    def _check_ratio(self) -> DynamicHedgeConfig:
        if self.iv_ratio_full <= self.iv_ratio_from:
            _raise_problems([(("iv_ratio_full",),
                              f"must be above iv_ratio_from ({self.iv_ratio_from:g})")])
        return self


class HedgingConfig(_Section):
    """The hedging actor (actors/hedging.py): delta band, tail protection, dynamic scaling,
    gamma scalping of the tail book."""

    enabled: StrictBool = False
    symbol: SymbolName = Field(default="SPY", description="what hedges trade (market.symbols)")
    check_minutes: float = Field(default=15, gt=0, le=390,
                                 description="market minutes between two hedge checks")
    delta: DeltaBandConfig = Field(default_factory=DeltaBandConfig)
    tail: TailHedgeConfig = Field(default_factory=TailHedgeConfig)
    dynamic: DynamicHedgeConfig = Field(default_factory=DynamicHedgeConfig)
    gamma_scalp: GammaScalpConfig = Field(default_factory=GammaScalpConfig)


class PortfolioLimitsConfig(_Section):
    """Portfolio limits, checked with the trade's effect; absent (null) means no limit. An
    order that leaves a measure no worse than before passes even when it is already over."""

    max_total_loss: float | None = Field(
        default=None, gt=0, description="open positions' max loss plus the new trade's"
    )
    max_positions_per_symbol: int | None = Field(
        default=None, ge=1, description="open positions and opening orders per underlying"
    )
    max_delta_shares: float | None = Field(
        default=None, gt=0, description="|net delta| per underlying, share-equivalents"
    )
    max_beta_weighted_delta: float | None = Field(
        default=None, gt=0, description="|beta-weighted delta|, SPY share-equivalents"
    )
    max_gamma_shares: float | None = Field(
        default=None, gt=0, description="|net gamma| per underlying, share delta per $1 move"
    )
    max_vega_per_vol_point: float | None = Field(
        default=None, gt=0, description="|net vega|, dollars per 1 point of implied volatility"
    )
    max_theta_per_day: float | None = Field(
        default=None, gt=0, description="|net theta|, dollars per calendar day"
    )
    max_var95: float | None = Field(default=None, gt=0, description="1-day 95% VaR, dollars")
    max_var99: float | None = Field(default=None, gt=0, description="1-day 99% VaR, dollars")
    max_es95: float | None = Field(default=None, gt=0, description="1-day 95% ES, dollars")
    max_es99: float | None = Field(default=None, gt=0, description="1-day 99% ES, dollars")


class RiskConfig(PortfolioLimitsConfig):
    """Per-account limits the risk gate enforces. Dollars throughout."""

    max_loss_per_trade: float = Field(gt=0)
    max_open_positions: int = Field(ge=1)
    min_buying_power: float = Field(ge=0, description="must remain after a new trade")
    daily_loss_limit: float = Field(gt=0, description="breaker trips when day P&L <= -limit")
    # One position per symbol unless the config says otherwise (null: no limit), as the
    # account held before a ladder of positions per symbol was possible.
    max_positions_per_symbol: int | None = Field(
        default=1, ge=1, description="open positions and opening orders per underlying")


class GlobalRiskConfig(PortfolioLimitsConfig):
    """Limits across every account together, checked by the risk gate on top of each
    account's own: the same portfolio limits over the sum of the accounts' books, and the
    global breaker, which halts new entries in every account."""

    daily_loss_limit: float | None = Field(
        default=None, gt=0,
        description="the global breaker trips when the accounts' day P&L together <= -limit")
    reducing_at: float | None = Field(
        default=0.75, gt=0, lt=1,
        description="at this fraction of daily_loss_limit: REDUCING in every account for the "
        "rest of the session; null: no REDUCING level")

    @property
    def any(self) -> bool:
        """Whether any global limit is set."""
        return any(getattr(self, n) is not None for n in type(self).model_fields
                   if n != "reducing_at")


class FillModelConfig(_Section):
    """How the paper broker matches orders (``FillModel``). Absent: fill in full at the limit."""

    mode: Literal["limit", "mid"] = Field(
        default="limit",
        description="limit: fill at the limit once natural reaches it; mid: fill at the mid "
        "less slippage once that reaches the limit")
    slippage_ticks: int = Field(
        default=0, ge=0, le=100, description="$0.01 ticks per share lost against the natural"
    )
    mid_fill_probability: bool = Field(
        default=False,
        description="a limit between mid and natural fills with the chance it is toward natural",
    )
    max_display_share: float | None = Field(
        default=None, gt=0, le=1, description="most of the displayed size one poll fills"
    )
    seed: int | None = Field(default=None, ge=0, description="absent: the top-level seed")
    max_open_interest_share: float | None = Field(
        default=None, gt=0, le=1,
        description="most of the legs' smallest open interest one order fills (where the data "
        "gives open interest)")
    mid_fill_exponent: float = Field(
        default=1.0, gt=0, le=10,
        description="shape k of the mid-fill chance x ** k, x the limit's share of the "
        "half-spread from the mid: 1 a straight line, 3.6 the calibrated curve")
    mid_fill_per_minute: StrictBool = Field(
        default=False,
        description="true: the mid-fill chance is per minute resting (the same whatever the "
        "tick); false: per draw, one each minute the broker is asked")
    impact_half_spreads: float = Field(
        default=0.0, ge=0, le=10,
        description="square-root market impact: half-spreads conceded by an execution of the "
        "whole displayed size, x sqrt(quantity / displayed), rounded down to the tick; 0: off")


class CashInterestConfig(_Section):
    """Interest the paper broker pays on idle (positive) cash (``thetadesk.rates.CashInterest``).
    Absent: none."""

    rate: Literal["tbill_3m"] | float = Field(
        description='an annual rate (0.04 = 4%), or "tbill_3m": the 3-month T-bill rate of each '
        "year (thetadesk/rates.py)")
    spread: float = Field(default=0.0, ge=0, le=MAX_SPREAD,
                          description="subtracted from the rate (brokers pay less than T-bills)")
    day_count: Literal[360, 365] = Field(
        default=360, description="days in the year of a day's interest: 360 (actual/360, the US "
        "money-market convention) or 365")

    @field_validator("rate", mode="before")
    @classmethod
    def _rate_kind(cls, value: Any) -> Any:
        if value == TBILL_RATE and isinstance(value, str):
            return value
        if not _is_number(value):
            raise PydanticCustomError(
                "rate_kind", f'must be "{TBILL_RATE}" or an annual rate such as 0.04')
        if not 0 <= value <= MAX_RATE:
            raise PydanticCustomError(
                "rate_range", f"must be between 0 and {MAX_RATE} (an annual decimal: 0.04 = 4%)")
        return value


class FeesConfig(_Section):
    """Dollars per option contract on every execution (``Fees``), like a US retail broker's.

    Absent: only the account's ``commission_per_contract`` is charged.
    """

    commission_per_contract: float | None = Field(
        default=None, ge=0, le=10, description="absent: the account's commission_per_contract"
    )
    orf_per_contract: float = Field(
        default=0.02, ge=0, le=10, description="Options Regulatory Fee, on every contract"
    )
    taf_per_contract_sold: float = Field(
        default=0.00279, ge=0, le=10, description="FINRA Trading Activity Fee, contracts sold"
    )
    taf_cap: float = Field(default=8.30, ge=0, le=1000, description="most TAF per execution")
    commission_per_share: float = Field(
        default=0.0, ge=0, le=1, description="dollars per share traded (closing assigned shares)"
    )
    taf_per_share_sold: float = Field(
        default=0.000166, ge=0, le=1, description="FINRA Trading Activity Fee, shares sold"
    )


AutoReset = Literal["next_session", "manual"]


class DailyLossBreakerConfig(_Section):
    """The limit is ``risk.daily_loss_limit``."""

    auto_reset: AutoReset = "next_session"


class DrawdownBreakerConfig(_Section):
    limit: float | None = Field(default=5000, gt=0, description="dollars below peak equity")
    auto_reset: AutoReset = "manual"


class ConsecutiveLossesBreakerConfig(_Section):
    limit: int | None = Field(default=5, ge=1, description="losing trades in a row")
    auto_reset: AutoReset = "manual"


class RejectionRateBreakerConfig(_Section):
    limit: float | None = Field(default=0.5, gt=0, le=1, description="rejected / sent")
    window: int = Field(default=20, ge=1, description="the last orders sent to the broker")
    min_orders: int = Field(default=5, ge=1, description="orders sent before the rate counts")
    auto_reset: AutoReset = "manual"

    @model_validator(mode="after")
    def _check_window(self) -> RejectionRateBreakerConfig:
        if self.min_orders > self.window:
            _raise_problems([(("min_orders",), f"must be <= window ({self.window})")])
        return self


class StaleDataBreakerConfig(_Section):
    limit_s: float | None = Field(default=900, gt=0,
                                  description="seconds without usable quotes for a position")
    auto_reset: AutoReset = "next_session"


class RestartStormBreakerConfig(_Section):
    limit: int | None = Field(default=3, ge=1, description="actor restarts in the window")
    window_minutes: float = Field(default=30, gt=0)
    auto_reset: AutoReset = "manual"


class BreakersConfig(_Section):
    """Circuit breakers (thetadesk.risk.breakers): a limit of null turns one off."""

    reducing_at: float | None = Field(
        default=0.75, gt=0, lt=1,
        description="share of a limit at which a breaker goes REDUCING (null: never)",
    )
    daily_loss: DailyLossBreakerConfig = Field(default_factory=DailyLossBreakerConfig)
    drawdown: DrawdownBreakerConfig = Field(default_factory=DrawdownBreakerConfig)
    consecutive_losses: ConsecutiveLossesBreakerConfig = Field(
        default_factory=ConsecutiveLossesBreakerConfig)
    rejection_rate: RejectionRateBreakerConfig = Field(
        default_factory=RejectionRateBreakerConfig)
    stale_data: StaleDataBreakerConfig = Field(default_factory=StaleDataBreakerConfig)
    restart_storm: RestartStormBreakerConfig = Field(default_factory=RestartStormBreakerConfig)


_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


class AlpacaAccountConfig(_Section):
    """An Alpaca account (``broker: alpaca``); its keys come from the environment variables it
    names (ALPACA_API_KEY / ALPACA_SECRET_KEY unless told otherwise), never from this file."""

    paper: StrictBool = Field(
        default=True, description="true: paper-api.alpaca.markets; false: real money")
    timeout_s: float = Field(default=10.0, gt=0, le=120,
                             description="seconds before an HTTP call counts as timed out")
    api_key_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] = Field(
        default="ALPACA_API_KEY", description="the variable holding this account's key id")
    secret_key_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] = Field(
        default="ALPACA_SECRET_KEY", description="the variable holding this account's secret")
    stream: StrictBool = Field(
        default=True,
        description="order updates from the trade_updates websocket (REST polling stays the "
        "fallback); false: poll only")
    stream_grace_s: float = Field(
        default=30.0, ge=0, le=600,
        description="seconds a dropped stream is still trusted before polling takes over")


class SizingConfig(_Section):
    """Portfolio construction (``thetadesk/sizing.py``): each trade's budget, the portfolio's
    and each bucket of correlated underlyings' budgets, spacing between entries, and smaller
    trades in high volatility. Percentages are of current equity (2.0 = 2%)."""

    risk_per_trade_pct: float | None = Field(
        default=None, gt=0, le=20,
        description="a trade's max loss as a percent of current equity; null: the account's "
        "fixed-dollar max_risk_per_trade")
    max_total_risk_pct: float | None = Field(
        default=None, gt=0, le=100,
        description="max loss of all open strategy positions and working entries, percent of "
        "equity; null: no such budget (the risk gate's dollar limits still apply)")
    max_bucket_risk_pct: float | None = Field(
        default=None, gt=0, le=100,
        description="max loss in one bucket of correlated underlyings, percent of equity")
    bucket_correlation: float = Field(
        default=0.7, ge=0, le=1,
        description="underlyings whose daily returns correlate at least this much share a bucket")
    correlation_window: int = Field(default=60, ge=20, le=1000,
                                    description="daily returns behind the correlations")
    min_days_between_entries: int = Field(
        default=0, ge=0, le=365,
        description="calendar days between two entries in one symbol (0: no spacing)")
    vol_target_iv: float | None = Field(
        default=None, gt=0, le=3,
        description="above this ATM implied vol a trade's budget shrinks by target / IV")
    vol_min_multiplier: float = Field(default=0.25, gt=0, le=1,
                                      description="the least the volatility multiplier goes")

    @model_validator(mode="after")
    def _check_budgets(self) -> SizingConfig:
        problems: list[tuple[Loc, str]] = []
        total, bucket = self.max_total_risk_pct, self.max_bucket_risk_pct
        if total is not None and bucket is not None and bucket > total:
            problems.append((("max_bucket_risk_pct",), (
                f"{_number(bucket)} is above max_total_risk_pct ({_number(total)}): a bucket "
                "cannot hold more than the whole portfolio")))
        per_trade = self.risk_per_trade_pct
        for key, limit in (("max_total_risk_pct", total), ("max_bucket_risk_pct", bucket)):
            if per_trade is not None and limit is not None and per_trade > limit:
                problems.append(((key,), (
                    f"{_number(limit)} is below risk_per_trade_pct ({_number(per_trade)}): "
                    "no full-size trade would fit")))
        _raise_problems(problems)
        return self


class AccountConfig(_Section):
    """One trading account and the broker behind it."""

    name: Annotated[str, StringConstraints(pattern=ACCOUNT_NAME_PATTERN)]
    broker: Literal["sim", "alpaca"] = Field(
        description="sim: the paper broker in the state dir; alpaca: an Alpaca account")
    alpaca: AlpacaAccountConfig = Field(default_factory=AlpacaAccountConfig)
    symbols: tuple[str, ...] = Field(min_length=1, description="keys of market.symbols")
    starting_cash: float = Field(gt=0, description="dollars")
    commission_per_contract: float = Field(ge=0, description="dollars")
    max_risk_per_trade: float = Field(
        gt=0, description="sizing budget, dollars: contracts = floor(budget / max loss per spread)"
    )
    risk: RiskConfig
    breakers: BreakersConfig = Field(default_factory=BreakersConfig)
    fill_model: FillModelConfig | None = None
    fees: FeesConfig | None = None
    cash_interest: CashInterestConfig | None = Field(
        default=None, description="interest on idle cash in the paper broker; absent: none")
    settlement: Literal["physical", "cash"] = Field(
        default="physical",
        description="physical: exercise and assignment at expiry deliver shares (ETF options); "
        "cash: settled at intrinsic value (index options)",
    )
    early_assignment: StrictBool = Field(
        default=False,
        description="assign in-the-money short calls before ex-dividend dates, using "
        "market.symbols[].dividend_yield",
    )
    strategies: tuple[Annotated[str, StringConstraints(pattern=PROFILE_NAME_PATTERN)], ...] = (
        Field(default=(DEFAULT_PROFILE,), min_length=1,
              description="the strategy profiles it trades: 'default' (the strategy section) "
              "and names from the strategies section"))
    live: StrictBool = Field(
        default=False,
        description="whether it may trade real money: required (true) for an Alpaca account "
        "with alpaca.paper false, refused anywhere else")

    @model_validator(mode="before")
    @classmethod
    def _share_commission(cls, data: Any) -> Any:
        # The commission may be given as commission_per_contract (the original key), as
        # fees.commission_per_contract, or as both if they agree: fill in the one left out.
        if not isinstance(data, Mapping) or not isinstance(data.get("fees"), Mapping):
            return data
        data, fees = dict(data), dict(data["fees"])
        if "commission_per_contract" not in data and _is_number(
            fees.get("commission_per_contract")
        ):
            data["commission_per_contract"] = fees["commission_per_contract"]
        elif fees.get("commission_per_contract") is None and _is_number(
            data.get("commission_per_contract")
        ):
            fees["commission_per_contract"] = data["commission_per_contract"]
        data["fees"] = fees
        return data

    @model_validator(mode="after")
    def _check_symbols(self) -> AccountConfig:
        problems: list[tuple[Loc, str]] = []
        for j, symbol in enumerate(self.symbols):
            if symbol in self.symbols[:j]:
                problems.append((("symbols", j), f"duplicate symbol '{symbol}'"))
        for j, profile in enumerate(self.strategies):
            if profile in self.strategies[:j]:
                problems.append((("strategies", j), f"duplicate strategy profile '{profile}'"))
        fees = self.fees
        if (fees is not None and fees.commission_per_contract is not None
                and fees.commission_per_contract != self.commission_per_contract):
            problems.append(
                (
                    ("fees", "commission_per_contract"),
                    f"{_number(fees.commission_per_contract)} contradicts "
                    f"commission_per_contract ({_number(self.commission_per_contract)}): "
                    "give the commission once, or the same value in both",
                )
            )
        _raise_problems(problems)
        return self


_E164 = r"^\+[1-9][0-9]{1,14}$"
NotifyChannel = Literal["log", "telegram", "sms", "voice"]


class RateLimitConfig(_Section):
    max: int = Field(ge=1, description="messages at most in any window")
    window_s: float = Field(gt=0, description="sliding window, seconds")


class QuietHoursConfig(_Section):
    start: NewYorkTime = Field(description='local wall-clock start, "22:00" (inclusive)')
    end: NewYorkTime = Field(description='local wall-clock end, "07:00" (exclusive)')
    tz: str = "America/New_York"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursConfig:
        if self.start == self.end:
            raise ValueError("quiet_hours start and end are equal: leave quiet_hours out (null)")
        return self


class EscalationConfig(_Section):
    ack_timeout_s: float = Field(default=300, gt=0, description="seconds to wait for /ack")
    calls_per_contact: int = Field(default=2, ge=1, le=10)


class NotificationsConfig(_Section):
    """Who hears about an alert (log and console are always on; the others need credentials
    from the environment: a channel whose credentials are missing is disabled with one warning).
    """

    console: bool = True
    min_severity: Literal["info", "warning", "critical"] = "info"
    routes: dict[Literal["info", "warning", "critical"], list[NotifyChannel]] = Field(
        default_factory=dict,
        description="severity -> channels; severities left out keep the defaults (info: log "
        "telegram; warning: + sms; critical: + voice)")
    kinds: dict[str, bool] = Field(default_factory=dict,
                                   description="alert kind -> false to send it to the log only")
    dedup_window_s: float = Field(default=900, gt=0)
    rate_limits: dict[NotifyChannel, RateLimitConfig] = Field(default_factory=dict)
    quiet_hours: QuietHoursConfig | None = None
    sms_to: list[Annotated[str, Field(pattern=_E164)]] = Field(
        default_factory=list, description="E.164 numbers; empty: TWILIO_TO_NUMBERS")
    voice_to: list[Annotated[str, Field(pattern=_E164)]] = Field(
        default_factory=list, description="E.164 numbers in escalation order; empty: "
        "TWILIO_TO_NUMBERS")
    telegram_chat_ids: list[int] = Field(default_factory=list)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    console: bool = Field(default=True, description="readable console output besides JSON")


class RiskReportsConfig(_Section):
    """What the risk actor measures on its schedule (after fills: the fast measures; at each
    session's close: also Monte Carlo VaR/ES with full revaluation, fanned out as Ray tasks)."""

    monte_carlo_scenarios: int = Field(
        default=100_000, ge=0, le=10_000_000, description="per account at each close; 0: off"
    )
    monte_carlo_workers: int = Field(default=2, ge=1, le=1024, description="Ray tasks per run")
    monte_carlo_model: Literal["gbm", "full"] = "full"
    beta_window: int = Field(
        default=60, ge=10, le=2520,
        description="daily returns for each underlying's beta against SPY (model-implied "
        "betas until the risk actor has seen that many closes)",
    )
    stress_scenarios: dict[str, Any] | None = Field(
        default=None,
        description="named scenarios {name: {spot_shock, vol_shock, description}}, relative "
        "shocks; absent: the built-in set (spot -5/-10/-20% with IV +50/+100%, gap up, vol "
        "crush, 1987, 2008, 2018, 2020)",
    )

    @field_validator("stress_scenarios")
    @classmethod
    def _scenarios(cls, value: Any) -> Any:
        if value is None:
            return value
        from thetadesk.errors import DataError
        from thetadesk.risk.scenarios import scenarios_from_config

        try:
            scenarios_from_config(value)
        except DataError as exc:
            raise PydanticCustomError("stress_scenario", "{reason}", {"reason": str(exc)}) from None
        return value


class BacktestConfig(_Section):
    """What a backtest does in place of a person (``scripts/backtest.py``; the live desk
    ignores it)."""

    reset_after_sessions: int | None = Field(
        default=None, ge=1, le=252,
        description="a breaker that needs a person (auto_reset: manual) is reset this many "
        "sessions after its trip, recorded as the backtest's policy; null: never (it halts "
        "new entries for the rest of the run, as it would live until someone resets it)")


class Config(_Section):
    """The whole configuration. The supervisor hands each actor only its own section."""

    seed: int = Field(ge=0)
    market: MarketConfig
    strategy: StrategyConfig
    strategies: dict[Annotated[str, StringConstraints(pattern=PROFILE_NAME_PATTERN)],
                     StrategyConfig] = Field(
        default_factory=dict,
        description="named variants of the strategy section: each gives only what differs "
        "from it; accounts[].strategies picks them")
    exits: ExitsConfig
    accounts: tuple[AccountConfig, ...] = Field(min_length=1)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    risk_reports: RiskReportsConfig = Field(default_factory=RiskReportsConfig)
    global_risk: GlobalRiskConfig = Field(default_factory=GlobalRiskConfig)
    hedging: HedgingConfig = Field(default_factory=HedgingConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    sizing: SizingConfig = Field(default_factory=SizingConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)

    @model_validator(mode="before")
    @classmethod
    def _merge_profiles(cls, data: Any) -> Any:
        # strategies.<name> gives only what differs from the strategy section: fill in the rest.
        if not isinstance(data, Mapping):
            return data
        base, profiles = data.get("strategy"), data.get("strategies")
        if not isinstance(base, Mapping) or not isinstance(profiles, Mapping):
            return data
        merged = {name: ({**base, **profile} if isinstance(profile, Mapping) else profile)
                  for name, profile in profiles.items()}
        return {**data, "strategies": merged}

    def strategy_profiles(self) -> dict[str, StrategyConfig]:
        """Every strategy profile by name: 'default' (the strategy section) and the named."""
        return {DEFAULT_PROFILE: self.strategy, **self.strategies}

    @model_validator(mode="before")
    @classmethod
    def _default_fill_seed(cls, data: Any) -> Any:
        # accounts[].fill_model.seed defaults to the top-level seed (when that one is valid).
        seed = data.get("seed") if isinstance(data, Mapping) else None
        accounts = data.get("accounts") if isinstance(data, Mapping) else None
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            return data
        if not isinstance(accounts, list | tuple):
            return data
        filled = []
        for account in accounts:
            model = account.get("fill_model") if isinstance(account, Mapping) else None
            if isinstance(model, Mapping) and model.get("seed") is None:
                account = {**account, "fill_model": {**model, "seed": seed}}
            filled.append(account)
        return {**data, "accounts": filled}

    @model_validator(mode="after")
    def _check_across_sections(self) -> Config:
        problems: list[tuple[Loc, str]] = []
        if self.exits.close_dte >= self.strategy.min_dte:
            problems.append(
                (
                    ("exits", "close_dte"),
                    f"must be < strategy.min_dte ({self.strategy.min_dte}), "
                    "or every new position would be closed at once",
                )
            )
        for kind, own in self.exits.structures.items():
            if "close_dte" in own.model_fields_set and own.close_dte >= self.strategy.min_dte:
                problems.append((("exits", "structures", kind, "close_dte"), (
                    f"must be < strategy.min_dte ({self.strategy.min_dte}), or every new "
                    "position would be closed at once")))
        if DEFAULT_PROFILE in self.strategies:
            problems.append((("strategies", DEFAULT_PROFILE), (
                "is the strategy section's own name: give the variant another name")))
        for name, profile in self.strategies.items():
            if self.exits.close_dte >= profile.min_dte:
                problems.append((("strategies", name, "min_dte"), (
                    f"must be > exits.close_dte ({self.exits.close_dte}), or every new "
                    "position would be closed at once")))
        first_index: dict[str, int] = {}
        alpaca_keys: dict[tuple[str, str], int] = {}
        known = ", ".join(sorted(self.market.symbols))
        if self.hedging.enabled and self.hedging.symbol not in self.market.symbols:
            problems.append((("hedging", "symbol"), (
                f"unknown symbol '{self.hedging.symbol}': hedges trade one of market.symbols "
                f"({known})")))
        for i, account in enumerate(self.accounts):
            if account.name in first_index:
                problems.append(
                    (
                        ("accounts", i, "name"),
                        f"duplicate account name '{account.name}' "
                        f"(also accounts[{first_index[account.name]}])",
                    )
                )
            first_index.setdefault(account.name, i)
            if account.name == ALL_ACCOUNTS:
                problems.append((("accounts", i, "name"), (
                    f"'{ALL_ACCOUNTS}' is reserved for the accounts together (global limits, "
                    "totals): choose another name")))
            profiles = self.strategy_profiles()
            for j, profile in enumerate(account.strategies):
                if profile not in profiles:
                    problems.append((("accounts", i, "strategies", j), (
                        f"unknown strategy profile '{profile}' (there are: "
                        f"{', '.join(profiles)})")))
            real_money = account.broker == "alpaca" and not account.alpaca.paper
            if real_money and not account.live:
                problems.append((("accounts", i, "live"), (
                    "must be true to trade real money (alpaca.paper is false): set live: true "
                    "for this account, or alpaca.paper: true for a paper account")))
            elif account.live and not real_money:
                problems.append((("accounts", i, "live"), (
                    "is for Alpaca accounts with alpaca.paper false (real money); this one "
                    "trades on paper: leave live out")))
            if account.broker == "alpaca":
                keys = (account.alpaca.api_key_env, account.alpaca.secret_key_env)
                if keys in alpaca_keys:
                    problems.append((("accounts", i, "alpaca", "api_key_env"), (
                        f"accounts[{alpaca_keys[keys]}] uses the same keys ({keys[0]}): two "
                        "accounts on one Alpaca login would trade each other's positions; "
                        "name other variables")))
                alpaca_keys.setdefault(keys, i)
                if (self.market.source == "alpaca" and keys == ("ALPACA_API_KEY",
                                                                "ALPACA_SECRET_KEY")
                        and account.alpaca.paper != self.market.alpaca.paper):
                    problems.append((("accounts", i, "alpaca", "paper"), (
                        f"is {str(account.alpaca.paper).lower()} but market.alpaca.paper is "
                        f"{str(self.market.alpaca.paper).lower()}, for the same key "
                        "ALPACA_API_KEY: a key is either a paper or a live key")))
                if not self.market.live:
                    problems.append((("accounts", i, "broker"), (
                        "alpaca trades at real prices: set market.source to polygon or alpaca "
                        f"(it is {self.market.source})")))
                for key in ("fill_model", "fees", "early_assignment", "cash_interest"):
                    if key in account.model_fields_set:
                        why = ("is for the simulated paper broker (broker: sim) only"
                               + (": an Alpaca account earns Alpaca's own interest on its cash"
                                  if key == "cash_interest" else ""))
                        problems.append((("accounts", i, key), why))
            for j, symbol in enumerate(account.symbols):
                if symbol not in self.market.symbols:
                    problems.append(
                        (
                            ("accounts", i, "symbols", j),
                            f"unknown symbol '{symbol}' (market.symbols has: {known})",
                        )
                    )
        _raise_problems(problems)
        return self


# --- loading -----------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate the YAML file at ``path`` (``env`` defaults to os.environ).

    Raises ConfigError for a missing or unreadable file, a YAML syntax error (with file and
    line), a missing ``${NAME}`` and every invalid value (with its YAML path).
    """
    return parse_config(load_config_data(path), env, source=str(path))


def load_config_data(path: str | os.PathLike[str]) -> Any:
    """The YAML file at ``path`` as plain data, not yet validated (for tools that change a
    setting before ``parse_config``, as the backtester does); ConfigError as ``load_config``'s
    for an unreadable file or a YAML syntax error."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return _parse_yaml(text, str(file))


def parse_config(
    data: Any, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Interpolate ``${NAME}`` in ``data`` (parsed YAML) from ``env``, then validate it.

    ``env`` defaults to os.environ; ``source`` names the input in messages that have no path.
    """
    if data is None:
        raise ConfigError(f"{source}: is empty; expected a mapping of sections")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: the top level must be a mapping of sections, got {_kind(data)}"
        )
    interpolated: dict[Loc, list[tuple[str, str]]] = {}
    data = _interpolate(data, os.environ if env is None else env, (), interpolated)
    secrets = []
    for loc, refs in interpolated.items():
        if not _is_plain_value(_annotation_at(loc)):
            secrets.extend(value for _, value in refs)
    for secret in secrets:
        register_secret(secret)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = _config_error(exc, interpolated, secrets)
    # Raised outside the handler so the pydantic error, which holds the raw input values
    # (interpolated secrets included), is not attached as context.
    raise error


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data, no Python objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None


# --- interpolation -----------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def _interpolate(
    node: Any, env: Mapping[str, str], loc: Loc, found: dict[Loc, list[tuple[str, str]]]
) -> Any:
    if isinstance(node, str):
        if "${" not in node:
            return node
        refs: list[tuple[str, str]] = []

        def substitute(match: re.Match[str]) -> str:
            if match[0] == "$${":
                return "${"
            name = match[1]
            if name is None:
                raise ConfigError(
                    "malformed reference: write ${NAME} (letters, digits, _) "
                    "or $${ for a literal ${",
                    path=_format_path(loc),
                )
            if name not in env:
                raise ConfigError(f"environment variable {name} is not set", path=_format_path(loc))
            refs.append((name, env[name]))
            return env[name]

        result = _REFERENCE.sub(substitute, node)
        if refs:
            found[loc] = refs
        return result
    if isinstance(node, Mapping):
        return {k: _interpolate(v, env, (*loc, k), found) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_interpolate(v, env, (*loc, i), found) for i, v in enumerate(node)]
    return node


# --- error messages ----------------------------------------------------------------------------


def _format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "<top level>"


def _unwrap(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and an optional ``X | None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _annotation_at(loc: Loc) -> Any:
    """The declared type at a YAML path, or None if no field lives there."""
    annotation: Any = Config
    for part in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif origin is dict:
            annotation = get_args(annotation)[1]
        elif origin in (list, tuple) and isinstance(part, int):
            annotation = get_args(annotation)[0]
        else:
            return None
    return _unwrap(annotation)


def _is_plain_value(annotation: Any) -> bool:
    # Numbers, switches, dates and fixed choices cannot carry a secret; registering them
    # would redact ordinary words such as "info" from every log line.
    return get_origin(annotation) is Literal or annotation in (int, float, bool, date, time)


def _kind(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, date | time):
        text = value.isoformat()
    else:
        text = str(value)
    return f"'{text[:37]}...'" if len(text) > 40 else f"'{text}'"


def _number(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}
_WRONG_TYPE = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing_size": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "date_type": "must be a date (YYYY-MM-DD)",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "must be a date (YYYY-MM-DD)",
    "date_future": "must be a date (YYYY-MM-DD)",
    "time_format": 'must be a time "HH:MM"',
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
}


def _describe(error: Any, loc: Loc, interpolated: Mapping[Loc, list[tuple[str, str]]]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        model = _annotation_at(loc[:-1])
        if isinstance(model, type) and issubclass(model, BaseModel):
            return f"unknown key (allowed: {', '.join(model.model_fields)})"
        return "unknown key"
    if kind in _BOUNDS:
        operator, key = _BOUNDS[kind]
        return f"must be {operator} {_number(ctx[key])}"
    if kind == "literal_error":
        annotation = _annotation_at(loc)
        if get_origin(annotation) is Literal:
            return "must be one of: " + ", ".join(str(a) for a in get_args(annotation))
        return f"must be one of: {ctx.get('expected', '?')}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}"
    if kind == "too_short":
        minimum = ctx.get("min_length")
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} entries"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in _WRONG_TYPE:
        message = _WRONG_TYPE[kind]
        if kind == "time_format" and isinstance(value, int):
            return message + " in quotes (YAML reads an unquoted 10:00 as the number 600)"
        refs = interpolated.get(loc)
        if refs:
            names = ", ".join("${" + name + "}" for name, _ in refs)
            return f"{message}, got the value of {names} (hidden)"
        return f"{message}, got {_show(value)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _config_error(
    exc: ValidationError,
    interpolated: Mapping[Loc, list[tuple[str, str]]],
    secrets: list[str],
) -> ConfigError:
    errors = exc.errors(include_url=False)
    problems: list[tuple[str, str]] = []
    for error in errors:
        loc: Loc = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == loc
            for other in errors
        ):
            continue  # pydantic counts only the valid items; the invalid ones are reported
        if error["type"] == "cross_field":
            for relative, message in error["ctx"]["problems"]:
                problems.append((_format_path((*loc, *relative)), message))
        elif loc and loc[-1] == "[key]":
            message = _describe(error, loc[:-1], {})
            problems.append((_format_path(loc[:-1]), f"key {message}"))
        else:
            problems.append((_format_path(loc), _describe(error, loc, interpolated)))
    message = problems[0][1] + "".join(f"\n{path}: {text}" for path, text in problems[1:])
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            message = message.replace(secret, "***")
    return ConfigError(message, path=problems[0][0])
