"""A paper broker with its own books in its own SQLite file: the "broker's truth" in simulation.

``SimBroker`` implements the ``Broker`` port against a market that quotes contracts (normally
``SimMarket``). Its state (orders, submissions, fills, positions, cash, settlements, the poll
cursor and its clock) lives only in the SQLite file at ``db_path`` (WAL, ``synchronous=FULL``),
and every method that changes it does so in ONE transaction committed before it returns. A
process killed at any instant (SIGKILL included) leaves either the state before or the state after
a call, and a new ``SimBroker`` on the same file carries on from there. It shares nothing with
ThetaDesk's own ledger, which is reconciled against it.

Units and conventions (those of ``thetadesk.models``):

- Order and fill prices are NET PER SHARE for one unit of the combination, > 0 a credit received,
  < 0 a debit paid. Closing orders carry the position's legs with their ratios reversed.
- Cash, equity, buying power, margin, commissions and settlement amounts are dollars.
- Positions are signed contract counts (> 0 long, < 0 short) with an average price per share.

Matching (``FillModel``; its defaults are the original behaviour): during a regular session an
open limit order fills, all of it, at its limit price (no price improvement) as soon as it is
marketable: the natural net price of its legs (bid for the legs sold, ask for the legs bought),
less ``slippage_ticks`` x $0.01, is at least the limit. A limit order never fills worse than its
limit, so slippage only makes a marginally marketable limit wait. A market order fills at the
natural price less the slippage. With ``mid_fill_probability`` a limit between that price and the
mid fills at the limit with a chance rising from 0 at the mid to 1 at the natural (linearly by
default; ``mid_fill_exponent`` bends the curve and ``mid_fill_per_minute`` makes it a chance per
minute resting, calibrated to documented option trading costs: see ``FillModel``), drawn once
per (seed, client order id, minute) so a run is reproducible. ``impact_half_spreads`` adds a
square-root market impact for executions large against the displayed size. With
``max_display_share`` one poll fills at most that share of the smallest displayed size among the
legs (in units of the combination); the rest stays open, PARTIALLY_FILLED, one ``Fill`` per
execution; ``max_open_interest_share`` caps an order's total at a share of its legs' smallest
open interest. ``mode="mid"`` prices fills at the legs' mid less the slippage instead (the
backtester's "mid" and "mid plus slippage" fill models). A leg without a usable quote means no
fill.

Lifetime (Alpaca's order states): orders are good until canceled (``time_in_force="gtc"``) or
day orders (``"day"``), EXPIRED at the first call at or after the close of their session (the
session in progress or, outside one, the next; early closes respected). An open order is
canceled by the broker when a leg expires first. ``replace`` turns an open order REPLACED and
opens a NEW one under a new client order id carrying the change.

Fees (``Fees``): per contract commission, plus an options regulatory fee per contract and a
TAF-like fee per contract sold (capped per execution), each regulatory part rounded up to the
cent per execution. ``Fill.commission`` is the TOTAL of an execution's fees. Without ``fees``
only ``commission_per_contract`` is charged, as before.

Expiry (``settlement="physical"``, the default: ETF options settle in shares): at the first
``poll`` at or after an option's expiry close (16:00 New York) it is settled against the
underlying's spot at that close. An option at least $0.01 in the money is exercised (long) or
assigned (short), as the OCC's exercise-by-exception does: it delivers ``quantity x multiplier``
shares (calls: received when long, delivered when short; puts the other way) at the strike,
against cash. Anything else expires worthless. The option position is removed and a
``Settlement`` recorded (settlements are not fills); the shares join the share positions, which
the account closes with a ``ShareOrder``. A vertical spread with both legs in the money nets out
to no shares and the same cash as a cash settlement. With ``settlement="cash"`` (index options)
in-the-money options are cash-settled at intrinsic value instead. VIX options are always
cash-settled, whatever ``settlement`` says, against the VIX at their expiry instant, the
opening of the expiry date (``thetadesk.vix``: European, AM-settled on the Special Opening
Quotation; the simulator's VIX of that opening minute stands in for it).

Early assignment (``early_assignment``, off by default): at the first ``poll`` at or after the
close of the session before an ex-dividend date, every short call in the money whose time value
(mid less intrinsic) is below the dividend is assigned at that close, as a rational holder of
the long call would exercise to collect the dividend. Ex-dividend dates and amounts come from
``EarlyAssignment`` (quarterly, the third Friday of March, June, September and December or the
next session, dividend = spot x yield / 4).

Shares (``ShareOrder``): quoted at the underlying's spot with a one-cent spread (bid rounded
down, ask up to the cent); a market order fills at once (during a session) at the ask for a
buy, the bid for a sell, less ``slippage_ticks``; a limit order fills at its limit once the
market reaches it. Fees: ``Fees.commission_per_share`` plus the TAF on shares sold. A closing
share order must reduce a held share position (net of other open closing share orders); an
opening one needs half its notional plus fees in buying power (Reg T initial margin).

Interest (``cash_interest``, a ``thetadesk.rates.CashInterest``; none by default): the positive
cash balance earns the configured annual rate (a number, or the 3-month T-bill rate of each
year) less a spread, per calendar day on actual/360 (or 365). At the first poll after a New York
calendar day has ended, that day's interest (and that of every day since the last credit: a
weekend's at Monday's first poll) is credited on the cash balance then, after the expiry
settlements and early assignments that belong to the last close and before any matching, in the
poll's own transaction, and the book's cursor (the last day credited) moves with it: a restart
never credits a day twice or skips one. Interest starts with the day of the broker's first poll.
Each credit is a row of its own; ``interest_paid()`` sums them. A negative balance is charged
nothing.

Capital: equity = cash + option positions marked at their mids (longs minus shorts, times
multiplier) + share positions at spot. Margin is the worst value at expiry of each underlying's
held options across its strikes (all expiries treated as expiring together), nothing for longs;
unbounded for net short calls; plus half the notional of every share position.
buying_power = equity - margin - the buying power reserved by open opening orders, floored at 0.
An opening order needs buying power for its own defined-risk margin (for a vertical: width x
multiplier x quantity) less the credit it receives, or plus the debit it pays, plus its fees
(a market order is priced at the natural less slippage when it is submitted); a partial fill
releases the filled share of the reservation. ``account()`` marks positions at the broker's
clock: the latest ``now`` it was given by ``submit``, ``cancel``, ``replace`` or ``poll``. A poll
that changes nothing else keeps its clock in memory rather than committing a write of its own
(an fsync per tick and account): a restarted broker may find its clock a few polls behind,
which only moves the marks of an ``account()`` asked before its first poll.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import structlog

from thetadesk.chain import NEW_YORK, expiry_instant
from thetadesk.clock import MarketCalendar
from thetadesk.errors import DataError, OrderRejected
from thetadesk.models import (
    BrokerAccount,
    BrokerOrder,
    BrokerPosition,
    Contract,
    Fill,
    Leg,
    OrderRequest,
    OrderStatus,
    Quote,
    Right,
    Settlement,
    ShareOrder,
    SharePosition,
)
from thetadesk.rates import CashInterest
from thetadesk.vix import CASH_SETTLED

__all__ = [
    "EarlyAssignment",
    "Fees",
    "FillModel",
    "QuoteSource",
    "Settlement",
    "SimBroker",
    "defined_risk_margin",
]

TICK = 0.01  # dollars per share: the price increment of slippage
FILL_MODES = ("limit", "mid")
EXERCISE_THRESHOLD = 0.01  # dollars per share in the money: the OCC's exercise by exception
SHARE_MARGIN = 0.5  # Reg T initial margin on share positions, as a fraction of the notional
MAX_MID_FILL_EXPONENT = 10.0
MAX_IMPACT_HALF_SPREADS = 10.0
# FillModel.mid_fill_exponent fitted per minute to Muravyev and Pearson (2020): see FillModel.
CALIBRATED_MID_FILL_EXPONENT = 3.6
CALIBRATED_CONCESSION = 0.75 * 10.0 / 13.0  # of the half-spread: 0.577
_SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS book (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    account TEXT NOT NULL,
    starting_cash REAL NOT NULL,
    cash REAL NOT NULL,
    fill_cursor INTEGER NOT NULL DEFAULT 0,
    clock TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL UNIQUE,
    broker_order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    opening INTEGER NOT NULL,
    legs TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    filled_quantity INTEGER NOT NULL DEFAULT 0,
    limit_price REAL NOT NULL,
    avg_fill_price REAL,
    reserved REAL NOT NULL DEFAULT 0,
    submitted_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS submissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL,
    at TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS submissions_by_client_id ON submissions (client_order_id);
CREATE TABLE IF NOT EXISTS fills (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    exec_id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    price REAL NOT NULL,
    commission REAL NOT NULL,
    time TEXT NOT NULL,
    leg_prices TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_by_client_id ON fills (client_order_id);
CREATE TABLE IF NOT EXISTS positions (
    occ TEXT NOT NULL,
    multiplier INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    avg_price REAL NOT NULL,
    PRIMARY KEY (occ, multiplier)
);
CREATE TABLE IF NOT EXISTS settlements (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    occ TEXT NOT NULL,
    multiplier INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    underlying_price REAL NOT NULL,
    intrinsic REAL NOT NULL,
    amount REAL NOT NULL,
    time TEXT NOT NULL
);
"""
# Version 1 -> 2: order types, day orders and replacement.
_MIGRATIONS = {
    2: (
        "ALTER TABLE orders ADD COLUMN order_type TEXT NOT NULL DEFAULT 'limit'",
        "ALTER TABLE orders ADD COLUMN time_in_force TEXT NOT NULL DEFAULT 'gtc'",
        "ALTER TABLE orders ADD COLUMN expires_at TEXT",
        "ALTER TABLE orders ADD COLUMN replaces TEXT",
        "ALTER TABLE orders ADD COLUMN replaced_by TEXT",
    ),
    # Version 2 -> 3: physical settlement (share positions, share orders, settlement kinds)
    # and early assignment (the ex-dividend dates already handled).
    3: (
        "ALTER TABLE orders ADD COLUMN instrument TEXT NOT NULL DEFAULT 'options'",
        "ALTER TABLE orders ADD COLUMN symbol TEXT",
        "ALTER TABLE orders ADD COLUMN side TEXT",
        "ALTER TABLE settlements ADD COLUMN kind TEXT NOT NULL DEFAULT 'cash_settled'",
        "ALTER TABLE settlements ADD COLUMN shares INTEGER NOT NULL DEFAULT 0",
        "UPDATE settlements SET kind = 'expired' WHERE intrinsic = 0",
        "ALTER TABLE book ADD COLUMN dividend_cursor TEXT",
        """CREATE TABLE IF NOT EXISTS shares (
            symbol TEXT PRIMARY KEY,
            quantity INTEGER NOT NULL,
            avg_price REAL NOT NULL
        )""",
    ),
    # Version 3 -> 4: interest on idle cash (the last New York calendar day credited, the
    # total paid, one row per credit).
    4: (
        "ALTER TABLE book ADD COLUMN interest_through TEXT",
        "ALTER TABLE book ADD COLUMN interest_paid REAL NOT NULL DEFAULT 0",
        """CREATE TABLE IF NOT EXISTS interest (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            first_day TEXT NOT NULL,
            last_day TEXT NOT NULL,
            balance REAL NOT NULL,
            amount REAL NOT NULL,
            time TEXT NOT NULL
        )""",
    ),
}


class QuoteSource(Protocol):
    """What the paper broker needs from a market (``SimMarket`` provides it)."""

    def quote(self, contract: Contract, now: datetime) -> Quote:
        """The contract's quote at ``now``; DataError if there is no usable one."""
        ...

    def spot(self, symbol: str, now: datetime) -> float:
        """The underlying's price per share at ``now``; DataError if unknown."""
        ...

    def is_open(self, now: datetime) -> bool:
        """True during a regular session."""
        ...


def _number(owner: str, name: str, value: object, *, integer: bool = False) -> None:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise DataError(f"{owner} {name} must be a{'n integer' if integer else ' number'}, "
                        f"got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{owner} {name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class FillModel:
    """How the paper broker matches orders. The defaults are the original behaviour: a limit
    order fills in full, at its limit, once the natural price reaches it.

    - ``mode``: "limit": limit orders fill at their limit, never better, once the natural
      price (less slippage) reaches it. "mid": the order fills at the MID of its legs less
      ``slippage_ticks`` (a backtest's optimistic "fill at mid" and its "mid plus slippage"
      variant) as soon as that price is at least the limit, so a marketable limit gets the price
      improvement up to the mid; a market order fills at mid - slippage. Share orders are
      unaffected (they fill at the one-cent share quote either way).
    - ``slippage_ticks``: $0.01 ticks per share lost against the natural price ("limit") or the
      mid ("mid"). In "limit" mode a market order fills at natural - slippage; a limit order
      needs natural - slippage >= limit and still fills at its limit (never worse, never
      better).
    - ``mid_fill_probability``: a limit between the mid and natural - slippage fills at the
      limit with probability (mid - limit) / (mid - (natural - slippage)): 0 at the mid, 1 at
      the natural. One uniform draw per (``seed``, client order id, minute): reproducible.
    - ``max_display_share``: None for no limit, else in (0, 1]: one poll fills at most
      floor(share x the smallest displayed size among the legs) units of the combination (the
      displayed size of a leg is the bid size of a leg sold, the ask size of a leg bought,
      divided by |ratio|); no fill if that is 0.
    - ``max_open_interest_share``: None for no limit, else in (0, 1]: one order fills at most
      floor(share x the smallest open interest among its legs) units in total, open interest
      from the market's chain at the poll (a leg whose chain row gives none, as the historical
      replay's, is not limited by it); no fill if that is 0.
    - ``mid_fill_exponent`` (k, in (0, 10]): the shape of the mid-fill chance. With x the
      limit's concession as a share of the half-spread, x = (mid - limit) / (mid - (natural -
      slippage)), the chance is x ** k: 0 at the mid, 1 at the natural; 1 is the original
      straight line, k > 1 makes fills near the mid rarer.
    - ``mid_fill_per_minute``: False (the original): x ** k is the chance of each draw, one per
      (order, minute) in which the broker is asked, so the fill rate depends on how often it is
      polled. True: x ** k is the chance per MINUTE the order rests in a session; a poll that
      comes n session minutes after the order was last tried fills it with 1 - (1 - x ** k) **
      n (one draw), so the rate is the same whatever the tick. The minutes are counted from
      the previous poll kept in memory (after a restart: from the broker's saved clock, which
      may be a few polls behind and so give the first poll one larger chance).
    - ``impact_half_spreads`` (Y, in [0, 10]; 0 is off): market impact, an extra concession per
      share of Y x H x sqrt(q / D) on an execution of q units, with H the combination's
      half-spread (mid - natural) and D its displayed size (the smallest among the legs, in
      units of the combination; a leg displaying nothing sets no scale, and with none
      displayed there is no impact), rounded DOWN to the $0.01 tick: a concession below a
      tick does not show in a price, so a small order pays nothing. It applies in both modes:
      the natural and the mid both move against the order by it (so a limit order can only
      wait longer: it still fills at its limit or better), and a market order fills that much
      worse. The square-root law of market impact (Toth et al. 2011, Phys. Rev. X 1, 021006;
      shown for options by Toth, Eisler and Bouchaud 2016, CFM, and Said et al. 2021,
      Quantitative Finance 21(1)) prices a metaorder of Q against the daily volume V at
      Y sigma_D sqrt(Q / V) with Y of order 1; here the displayed size stands for the
      liquidity and the half-spread for the price scale (the spread tracks the volatility per
      trade: Wyart et al. 2008, Quantitative Finance 8(1)), so Y = 1 means taking the whole
      displayed size costs one more half-spread.

    Calibration of the mid-fill model (``CALIBRATED_MID_FILL_EXPONENT``, per minute): Muravyev
    and Pearson (2020, "Options Trading Costs Are Lower than You Think", Review of Financial
    Studies 33(11), 4973-5014) measure, for options on S&P 500 stocks in 2004-2015, quoted
    half-spreads of 13 cents and conventional effective half-spreads of 10 cents (10 / 13 =
    0.77 of the half-spread), and find that measured against the option's fair value the
    average effective spread is a quarter smaller (0.75 x 10 / 13 = 0.577 of the half-spread;
    traders who time their executions pay less than 40% of the conventional measure, at most
    0.31). ThetaDesk takes the average, 0.577, as what a working order concedes on average,
    and fits k so that the desk's ladder (``signals.timing.LimitLadder``: from the mid rounded
    in the trader's favour, one $0.01 step every 5 minutes until the natural, on the
    simulator's median half-spread of the default SPY bull put spread, 6.5 cents, in a market
    that does not move) fills at a mean concession of 0.577 of the half-spread: k = 3.63,
    shipped as 3.6 (mean 0.574; ``scripts/calibrate_mid_fill.py`` sums the exact expectation
    over the ladder's steps and solves it by bisection; three ladders in four fill at the 4th
    or 5th cent, 3.5 or 4.5 cents from the mid, none at it;
    ``tests/unit/adapters/test_sim_broker_fill_calibration.py`` checks 600 ladders through the
    broker). k = 1.6 gives the timers' 0.31 instead. The fit holds for
    that half-spread: the same curve has a ladder concede 0.70 of a 3-cent half-spread, 0.52
    of a 10-cent one and 0.46 of an 18-cent one (8 cents), and a ladder that gives up before
    the natural (``max_steps``) may not fill at all. Price moves in the simulator add fills
    of their own (the natural crosses a resting limit), so whole runs concede less than the
    static figure. For comparison, retail market orders in 2024 got 7% to 52% price
    improvement against the NBBO depending on the broker (Huang, Jorion and Schwarz 2024,
    "Some Anonymous Options Trades Are More Equal than Others", SSRN 4951825).
    """

    mode: str = "limit"
    slippage_ticks: int = 0
    mid_fill_probability: bool = False
    max_display_share: float | None = None
    seed: int = 0
    max_open_interest_share: float | None = None
    mid_fill_exponent: float = 1.0
    mid_fill_per_minute: bool = False
    impact_half_spreads: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in FILL_MODES:
            raise DataError(f"FillModel mode must be one of {', '.join(FILL_MODES)}, "
                            f"got {self.mode!r}")
        _number("FillModel", "slippage_ticks", self.slippage_ticks, integer=True)
        _number("FillModel", "seed", self.seed, integer=True)
        if not isinstance(self.mid_fill_probability, bool):
            raise DataError(f"FillModel mid_fill_probability must be a bool, "
                            f"got {self.mid_fill_probability!r}")
        share = self.max_display_share
        if share is not None:
            _number("FillModel", "max_display_share", share)
            if not 0 < share <= 1:
                raise DataError(f"FillModel max_display_share must be in (0, 1], got {share!r}")
        oi = self.max_open_interest_share
        if oi is not None:
            _number("FillModel", "max_open_interest_share", oi)
            if not 0 < oi <= 1:
                raise DataError(f"FillModel max_open_interest_share must be in (0, 1], "
                                f"got {oi!r}")
        _number("FillModel", "mid_fill_exponent", self.mid_fill_exponent)
        if not 0 < self.mid_fill_exponent <= MAX_MID_FILL_EXPONENT:
            raise DataError(f"FillModel mid_fill_exponent must be in (0, "
                            f"{MAX_MID_FILL_EXPONENT}], got {self.mid_fill_exponent!r}")
        if not isinstance(self.mid_fill_per_minute, bool):
            raise DataError(f"FillModel mid_fill_per_minute must be a bool, "
                            f"got {self.mid_fill_per_minute!r}")
        _number("FillModel", "impact_half_spreads", self.impact_half_spreads)
        if self.impact_half_spreads > MAX_IMPACT_HALF_SPREADS:
            raise DataError(f"FillModel impact_half_spreads must be <= "
                            f"{MAX_IMPACT_HALF_SPREADS}, got {self.impact_half_spreads!r}")

    def mid_fill_chance(self, concession: float) -> float:
        """The mid-fill chance (per draw, or per minute with ``mid_fill_per_minute``) of a limit
        conceding ``concession`` of the half-spread: 0 at or above the mid (<= 0), 1 at or past
        the natural (>= 1), ``concession ** mid_fill_exponent`` between."""
        if concession <= 0.0:
            return 0.0
        if concession >= 1.0:
            return 1.0
        k = self.mid_fill_exponent
        return concession if k == 1.0 else concession ** k

    def impact(self, half_spread: float, displayed: int, quantity: int) -> float:
        """The market-impact concession in dollars per share of an execution of ``quantity``
        units against ``displayed`` units shown, at a half-spread of ``half_spread`` dollars:
        ``impact_half_spreads x half_spread x sqrt(quantity / displayed)`` rounded down to the
        tick; 0 when off or when nothing is displayed."""
        y = self.impact_half_spreads
        if not y or displayed <= 0 or quantity <= 0 or half_spread <= 0.0:
            return 0.0
        raw = y * half_spread * math.sqrt(quantity / displayed)
        return math.floor(raw / TICK + 1e-9) * TICK


@dataclass(frozen=True, slots=True)
class Fees:
    """Dollars per option contract charged on every execution, like a US retail broker's:

    - ``commission_per_contract`` on every contract;
    - ``orf_per_contract``: the Options Regulatory Fee, on every contract;
    - ``taf_per_contract_sold``: the FINRA Trading Activity Fee, on contracts SOLD only (legs
      sold, opening or closing), at most ``taf_cap`` dollars per execution.

    Shares: ``commission_per_share`` on every share (0 at commission-free brokers) and
    ``taf_per_share_sold`` on shares sold, capped at ``taf_cap`` per execution.

    The regulatory parts (ORF, TAF) are each rounded UP to the cent per execution, as brokers
    pass them on; the commission is not rounded. ``Fill.commission`` carries ``total``.
    """

    commission_per_contract: float = 0.65
    orf_per_contract: float = 0.02
    taf_per_contract_sold: float = 0.00279
    taf_cap: float = 8.30
    commission_per_share: float = 0.0
    taf_per_share_sold: float = 0.000166

    def __post_init__(self) -> None:
        for name in ("commission_per_contract", "orf_per_contract", "taf_per_contract_sold",
                     "taf_cap", "commission_per_share", "taf_per_share_sold"):
            _number("Fees", name, getattr(self, name))

    def shares(self, quantity: int) -> float:
        """The fees in dollars of buying (``quantity`` > 0) or selling (< 0) shares."""
        total = self.commission_per_share * abs(quantity)
        if quantity < 0:
            taf = _cents_up(min(self.taf_per_share_sold * -quantity, self.taf_cap))
            if taf:
                total = round(total + taf, 10)
        return total

    def breakdown(self, legs: Iterable[Leg], quantity: int) -> dict[str, float]:
        """The fees in dollars of trading ``quantity`` units of ``legs``, by kind."""
        legs = tuple(legs)
        per_unit = sum(abs(leg.ratio) for leg in legs)
        sold = sum(-leg.ratio for leg in legs if leg.ratio < 0) * quantity
        # The original formula, kept exactly: equal floats for the same inputs as before.
        parts = {"commission": self.commission_per_contract * per_unit * quantity}
        parts["orf"] = _cents_up(self.orf_per_contract * per_unit * quantity)
        parts["taf"] = _cents_up(min(self.taf_per_contract_sold * sold, self.taf_cap))
        return parts

    def total(self, legs: Iterable[Leg], quantity: int) -> float:
        parts = self.breakdown(legs, quantity)
        total = parts["commission"]
        for extra in (parts["orf"], parts["taf"]):
            if extra:
                total = round(total + extra, 10)
        return total


@dataclass(frozen=True, slots=True)
class EarlyAssignment:
    """Early assignment of short calls before ex-dividend dates (see the module docstring).

    ``dividend_yields``: annual dividend yield per underlying (0.013 = 1.3%); underlyings not
    named pay no dividend. Ex-dividend dates: the third Friday of each month in ``months`` (or
    the next session if that is not one); the dividend per share is spot x yield / 4 at the
    close of the session before.
    """

    dividend_yields: Mapping[str, float]
    months: tuple[int, ...] = (3, 6, 9, 12)

    def __post_init__(self) -> None:
        if not isinstance(self.dividend_yields, Mapping):
            raise DataError(f"EarlyAssignment dividend_yields must be a mapping, "
                            f"got {self.dividend_yields!r}")
        for symbol, value in self.dividend_yields.items():
            _number("EarlyAssignment", f"dividend_yields[{symbol!r}]", value)
            if value > 0.2:
                raise DataError(f"EarlyAssignment dividend yield of {symbol} must be <= 0.2, "
                                f"got {value!r}")
        months = tuple(self.months)
        if not months or any(isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 12
                             for m in months):
            raise DataError(f"EarlyAssignment months must be 1..12, got {self.months!r}")
        object.__setattr__(self, "months", tuple(sorted(set(months))))
        object.__setattr__(self, "dividend_yields", dict(self.dividend_yields))

    def ex_dates(self, first: date, last: date, calendar: MarketCalendar) -> list[date]:
        """The ex-dividend sessions from ``first`` to ``last`` inclusive."""
        found = []
        for year in range(first.year, last.year + 1):
            for month in self.months:
                day = date(year, month, 15)
                while day.weekday() != 4:  # the third Friday is the first Friday from the 15th
                    day += timedelta(days=1)
                ex = calendar.next_session(day)
                if first <= ex <= last:
                    found.append(ex)
        return found


def _cents_up(amount: float) -> float:
    return math.ceil(round(amount * 100.0, 6)) / 100.0 if amount > 0 else 0.0


def _share_quote(spot: float) -> tuple[float, float]:
    """A one-cent share quote around ``spot``: the bid rounded down, the ask up to the cent."""
    bid = math.floor(round(spot * 100.0, 6)) / 100.0
    return bid, round(bid + TICK, 2)


def _intrinsic(contract: Contract, underlying_price: float) -> float:
    if contract.right is Right.CALL:
        return max(underlying_price - contract.strike, 0.0)
    return max(contract.strike - underlying_price, 0.0)


def defined_risk_margin(holdings: Iterable[tuple[Contract, int]]) -> float:
    """Margin in dollars for signed contract quantities: per underlying, the worst value of the
    options at expiry over the underlying prices 0 and every strike, as a loss (0 if none).

    Every expiry is treated as expiring together (a calendar's long back month covers its short
    front month). Net short calls on an underlying have unbounded risk: the margin is ``inf``.
    """
    by_underlying: dict[str, list[tuple[Contract, int]]] = defaultdict(list)
    for contract, quantity in holdings:
        if quantity:
            by_underlying[contract.underlying].append((contract, quantity))
    total = 0.0
    for held in by_underlying.values():
        if sum(q * c.multiplier for c, q in held if c.is_call) < 0:
            return math.inf
        nodes = {0.0, *(c.strike for c, _ in held)}
        worst = min(
            sum(q * c.multiplier * _intrinsic(c, s) for c, q in held) for s in nodes
        )
        total += max(0.0, -worst)
    return total


def _draw(seed: int, client_order_id: str, now: datetime) -> float:
    """A uniform [0, 1) draw that depends only on (seed, client order id, minute of ``now``)."""
    key = int.from_bytes(hashlib.sha256(client_order_id.encode()).digest()[:8], "big")
    minute = int(now.timestamp()) // 60
    return float(np.random.default_rng([seed, key, minute]).random())


def _minute(when: datetime) -> int:
    return int(when.timestamp()) // 60


def _minutes(row: sqlite3.Row, now: datetime, previous: datetime | None,
             opened: datetime) -> int:
    """Session minutes since a resting order was last tried: since the previous poll or its
    own submission, whichever is later, counted from today's open if that was before it (the
    open's minute included)."""
    start = _time(row["submitted_at"])
    if previous is not None and previous > start:
        start = previous
    if start < opened:
        return _minute(now) - _minute(opened) + 1
    return _minute(now) - _minute(start)


def _iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _aware(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise DataError(f"now must be a timezone-aware datetime, got {now!r}")
    return now.astimezone(UTC)


def _legs_json(legs: Iterable[Leg]) -> str:
    return json.dumps([[leg.contract.occ, leg.contract.multiplier, leg.ratio] for leg in legs])


def _legs(text: str) -> tuple[Leg, ...]:
    return tuple(Leg(Contract.from_occ(occ, mult), ratio) for occ, mult, ratio in json.loads(text))


def _displayed(legs: Iterable[Leg], quotes: dict[Contract, Quote],
               shown_only: bool = False) -> int:
    """The smallest displayed size among the legs in units of the combination (the bid size
    of a leg sold, the ask size of a leg bought, over |ratio|); ``shown_only``: legs showing
    nothing are left out (0 if none shows any)."""
    sizes = [
        (quotes[leg.contract].ask_size if leg.is_long else quotes[leg.contract].bid_size)
        // abs(leg.ratio)
        for leg in legs
    ]
    if shown_only:
        sizes = [n for n in sizes if n > 0]
    return min(sizes, default=0)


def _natural(legs: Iterable[Leg], quotes: dict[Contract, Quote]) -> float:
    """Net per-share price of one unit when crossing every leg's spread, > 0 credit."""
    return sum(
        -leg.ratio * (quotes[leg.contract].ask if leg.is_long else quotes[leg.contract].bid)
        for leg in legs
    )


class SimBroker:
    """A paper broker implementing the ``Broker`` port, persisted at ``db_path``.

    ``account`` names the account (an existing file must belong to it); ``starting_cash`` in
    dollars seeds a NEW file only (an existing file keeps its own cash). Fees: ``fees`` if given
    (``commission_per_contract``, if also given, must equal its commission), else only
    ``commission_per_contract`` dollars per option contract traded (the original behaviour).
    ``fill_model`` says how orders match (default: the original all-at-the-limit rule);
    ``calendar`` gives day orders their session close (default: the NYSE ``MarketCalendar``).
    ``settlement`` is "physical" (ETF options: exercise and assignment deliver shares) or "cash";
    ``early_assignment`` turns on assignment of short calls before ex-dividend dates;
    ``cash_interest`` pays interest on idle cash (default: none).
    """

    def __init__(
        self,
        account: str,
        market: QuoteSource,
        db_path: Path,
        starting_cash: float,
        commission_per_contract: float | None = None,
        *,
        fees: Fees | None = None,
        fill_model: FillModel | None = None,
        calendar: MarketCalendar | None = None,
        settlement: str = "physical",
        early_assignment: EarlyAssignment | None = None,
        cash_interest: CashInterest | None = None,
        durable: bool = True,
    ) -> None:
        # durable=False: synchronous=OFF, for a backtest's scratch books only (see Ledger).
        self._clock_unsaved: datetime | None = None  # a poll's clock not yet in the file
        self._last_match: datetime | None = None  # the last poll that matched orders
        self._interest_through: date | None = None  # the book's cursor, as last committed
        self._after_commit: list[Callable[[], None]] = []
        if not isinstance(account, str) or not account:
            raise DataError(f"SimBroker account must be a non-empty string, got {account!r}")
        _number("SimBroker", "starting_cash", starting_cash)
        if commission_per_contract is not None:
            _number("SimBroker", "commission_per_contract", commission_per_contract)
        if fees is None:
            fees = Fees(float(commission_per_contract or 0.0), 0.0, 0.0, 0.0,
                        taf_per_share_sold=0.0)
        elif not isinstance(fees, Fees):
            raise DataError(f"SimBroker fees must be a Fees, got {fees!r}")
        elif (commission_per_contract is not None
              and float(commission_per_contract) != fees.commission_per_contract):
            raise DataError(
                f"SimBroker commission_per_contract {commission_per_contract!r} contradicts "
                f"fees.commission_per_contract {fees.commission_per_contract!r}: give one"
            )
        if fill_model is not None and not isinstance(fill_model, FillModel):
            raise DataError(f"SimBroker fill_model must be a FillModel, got {fill_model!r}")
        if settlement not in ("physical", "cash"):
            raise DataError(f"SimBroker settlement must be 'physical' or 'cash', "
                            f"got {settlement!r}")
        if early_assignment is not None and not isinstance(early_assignment, EarlyAssignment):
            raise DataError(f"SimBroker early_assignment must be an EarlyAssignment, "
                            f"got {early_assignment!r}")
        if cash_interest is not None and not isinstance(cash_interest, CashInterest):
            raise DataError(f"SimBroker cash_interest must be a CashInterest, "
                            f"got {cash_interest!r}")
        self._interest = cash_interest if cash_interest is not None and cash_interest.pays \
            else None
        self._settlement = settlement
        self._early = early_assignment
        self._account = account
        self._market = market
        self._fees = fees
        self._fill_model = fill_model or FillModel()
        self._calendar = calendar or MarketCalendar()
        self._path = Path(db_path)
        self._lock = threading.RLock()
        self._account_cache: tuple[tuple, BrokerAccount] | None = None  # ((changes, clock), ..)
        self._log = structlog.get_logger("sim_broker").bind(account=account)
        self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self._db.execute("PRAGMA busy_timeout=10000")
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if not 0 <= version <= _SCHEMA_VERSION:
                raise DataError(
                    f"{self._path}: broker schema version {version}, expected {_SCHEMA_VERSION}"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for target in range(max(version, 1) + 1, _SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            row = db.execute("SELECT account FROM book WHERE id = 1").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO book (id, account, starting_cash, cash) VALUES (1, ?, ?, ?)",
                    (account, float(starting_cash), float(starting_cash)),
                )
            elif row["account"] != account:
                raise DataError(
                    f"{self._path} holds the books of account {row['account']!r}, "
                    f"not {account!r}"
                )
            through = db.execute("SELECT interest_through FROM book WHERE id = 1").fetchone()[0]
            self._interest_through = None if through is None else date.fromisoformat(through)

    def close(self) -> None:
        """Close the database connection (the state is already durable; a poll's clock kept in
        memory is written first)."""
        with self._lock:
            if self._clock_unsaved is not None:
                try:
                    with self._tx():
                        self._advance_clock(self._clock_unsaved)
                except sqlite3.Error:  # the clock only moves marks; closing matters more
                    pass
            self._db.close()

    # -- the Broker port ------------------------------------------------------------------

    def submit(self, order: OrderRequest | ShareOrder, now: datetime) -> BrokerOrder:
        """Accept an option or share order (and fill it at once if it can) or raise
        OrderRejected.

        A rejected order is recorded with status REJECTED and its reason, except a duplicate
        client order id, which leaves the existing order as it was.
        """
        now = _aware(now)
        if not isinstance(order, OrderRequest | ShareOrder):
            raise DataError(f"submit needs an OrderRequest or a ShareOrder, got {order!r}")
        coid = order.client_order_id
        with self._tx() as db:
            self._advance_clock(now)
            self._expire_day_orders(now)
            existing = self._order_row(coid)
            if existing is not None:
                reason = (
                    f"client_order_id must be unique: {coid!r} is already used by an order "
                    f"that is {existing['status']}"
                )
                db.execute(
                    "INSERT INTO submissions (client_order_id, at, outcome) VALUES (?, ?, ?)",
                    (coid, _iso(now), "duplicate"),
                )
                rejected: str | None = reason
                result = None
            else:
                rejected, reserved = (self._check_shares(order, now)
                                      if isinstance(order, ShareOrder)
                                      else self._check(order, now))
                self._insert(order, now, rejected, reserved)
                db.execute(
                    "INSERT INTO submissions (client_order_id, at, outcome) VALUES (?, ?, ?)",
                    (coid, _iso(now), OrderStatus.REJECTED.value if rejected
                     else OrderStatus.NEW.value),
                )
                if rejected is None and self._market.is_open(now):
                    row = self._order_row(coid)
                    assert row is not None
                    self._try_fill(row, now)
                result = self._order(self._order_row(coid))
        if rejected is not None:
            self._log.info("order_rejected", client_order_id=coid, reason=rejected)
            raise OrderRejected(rejected)
        assert result is not None
        self._log.info("order_accepted", client_order_id=coid, status=result.status.value)
        return result

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            row = self._order_row(client_order_id)
            return None if row is None else self._order(row)

    def cancel(self, client_order_id: str, now: datetime) -> BrokerOrder:
        """Cancel an open order; a final order is returned unchanged. Raises OrderRejected if
        the broker has no order with this id."""
        now = _aware(now)
        with self._tx() as db:
            row = self._order_row(client_order_id)
            if row is None:
                raise OrderRejected(f"cannot cancel {client_order_id!r}: no such order")
            self._advance_clock(now)
            self._expire_day_orders(now)
            row = self._order_row(client_order_id)
            assert row is not None
            if OrderStatus(row["status"]).is_open:
                db.execute(
                    "UPDATE orders SET status = ?, updated_at = ?, reason = ? WHERE seq = ?",
                    (OrderStatus.CANCELED.value, _iso(now), "canceled by request", row["seq"]),
                )
            return self._order(self._order_row(client_order_id))

    def replace(
        self,
        client_order_id: str,
        new_client_order_id: str,
        now: datetime,
        limit_price: float | None = None,
        quantity: int | None = None,
    ) -> BrokerOrder:
        """Replace an open order: it becomes REPLACED and a NEW order ``new_client_order_id``
        with the same legs, side, type and time in force carries the change (and fills at once
        if it can). ``quantity`` is the new order's quantity, by default what the old one had
        left unfilled; fills of the old order stay with the old order.

        Raises OrderRejected, changing nothing, if there is no such order, it is final, the new
        id is already used, or the new order fails the checks a submission passes.
        """
        now = _aware(now)
        with self._tx() as db:
            row = self._order_row(client_order_id)
            if row is None:
                raise OrderRejected(f"cannot replace {client_order_id!r}: no such order")
            self._advance_clock(now)
            self._expire_day_orders(now)
            row = self._order_row(client_order_id)
            assert row is not None
            if not OrderStatus(row["status"]).is_open:
                raise OrderRejected(
                    f"cannot replace {client_order_id!r}: the order is {row['status']}"
                )
            existing = self._order_row(new_client_order_id)
            if existing is not None:
                raise OrderRejected(
                    f"client_order_id must be unique: {new_client_order_id!r} is already used "
                    f"by an order that is {existing['status']}"
                )
            remaining = row["quantity"] - row["filled_quantity"]
            try:
                order: OrderRequest | ShareOrder
                if row["instrument"] == "shares":
                    size = remaining if quantity is None else quantity
                    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                        raise DataError(f"quantity must be a positive integer, got {size!r}")
                    order = ShareOrder(
                        new_client_order_id, self._account, row["symbol"],
                        size if row["side"] == "buy" else -size, row["order_type"],
                        None if row["order_type"] == "market"
                        else (row["limit_price"] if limit_price is None else limit_price),
                        row["time_in_force"], bool(row["opening"]),
                    )
                else:
                    order = OrderRequest(
                        new_client_order_id, self._account, _legs(row["legs"]),
                        remaining if quantity is None else quantity,
                        row["limit_price"] if limit_price is None else limit_price,
                        bool(row["opening"]), row["order_type"], row["time_in_force"],
                    )
            except DataError as exc:
                raise OrderRejected(f"cannot replace {client_order_id!r}: {exc}") from None
            # The old order stops counting (reservation, closing commitments) before the check;
            # a rejection rolls the whole transaction back.
            db.execute(
                "UPDATE orders SET status = ?, reserved = 0, updated_at = ?, reason = ?, "
                "replaced_by = ? WHERE seq = ?",
                (OrderStatus.REPLACED.value, _iso(now), f"replaced by {new_client_order_id}",
                 new_client_order_id, row["seq"]),
            )
            rejected, reserved = (self._check_shares(order, now)
                                  if isinstance(order, ShareOrder) else self._check(order, now))
            if rejected is not None:
                raise OrderRejected(f"cannot replace {client_order_id!r}: {rejected}")
            self._insert(order, now, None, reserved, replaces=client_order_id)
            db.execute(
                "INSERT INTO submissions (client_order_id, at, outcome) VALUES (?, ?, ?)",
                (new_client_order_id, _iso(now), f"replaces {client_order_id}"),
            )
            if self._market.is_open(now):
                new_row = self._order_row(new_client_order_id)
                assert new_row is not None
                self._try_fill(new_row, now)
            result = self._order(self._order_row(new_client_order_id))
        self._log.info("order_replaced", client_order_id=client_order_id,
                       new_client_order_id=new_client_order_id, status=result.status.value)
        return result

    def open_orders(self) -> list[BrokerOrder]:
        with self._lock:
            return [self._order(row) for row in self._open_rows()]

    def fills(self, client_order_id: str) -> list[Fill]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM fills WHERE client_order_id = ? ORDER BY seq", (client_order_id,)
            ).fetchall()
            return [self._fill(row) for row in rows]

    def poll(self, now: datetime) -> list[Fill]:
        """Assign short calls early before ex-dividend dates (if enabled), settle expired
        options, expire day orders past their session's close, cancel orders
        whose legs expired, match resting orders, and return the fills no earlier poll returned,
        oldest first."""
        now = _aware(now)
        with self._tx() as db:
            changes = db.total_changes
            if self._early is not None:
                self._assign_early(now)
            self._settle_expired(now)
            if self._interest is not None:
                self._credit_interest(now)
            resting = bool(self._open_rows())  # the common case: nothing rests, skip the rest
            if resting:
                self._expire_day_orders(now)
            for row in self._open_rows() if resting else ():
                expired = [
                    leg.contract for leg in _legs(row["legs"])
                    if expiry_instant(leg.contract.expiry, leg.contract.underlying) <= now
                ]
                if expired:
                    db.execute(
                        "UPDATE orders SET status = ?, updated_at = ?, reason = ? WHERE seq = ?",
                        (
                            OrderStatus.CANCELED.value, _iso(now),
                            f"leg {expired[0]} expired before the order filled", row["seq"],
                        ),
                    )
            if resting and self._market.is_open(now):
                model = self._fill_model
                per_minute = model.mid_fill_probability and model.mid_fill_per_minute
                previous, opened = None, now
                if per_minute:
                    previous = self._last_match or self._saved_clock()
                    opened = self._calendar.session_open(now.astimezone(NEW_YORK).date())
                for row in self._open_rows():
                    minutes = _minutes(row, now, previous, opened) if per_minute else 1
                    self._try_fill(row, now, minutes)
                self._after_commit.append(lambda: setattr(self, "_last_match", now))
            cursor = db.execute("SELECT fill_cursor FROM book WHERE id = 1").fetchone()[0]
            rows = db.execute(
                "SELECT * FROM fills WHERE seq > ? ORDER BY seq", (cursor,)
            ).fetchall()
            if rows:
                db.execute("UPDATE book SET fill_cursor = ? WHERE id = 1", (rows[-1]["seq"],))
            if db.total_changes != changes:  # a write anyway: the clock goes with it
                self._advance_clock(now)
            elif self._clock_unsaved is None or self._clock_unsaved < now:
                self._clock_unsaved = now
            return [self._fill(row) for row in rows]

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            held = [
                BrokerPosition(Contract.from_occ(r["occ"], r["multiplier"]), r["quantity"],
                               r["avg_price"])
                for r in self._db.execute("SELECT * FROM positions").fetchall()
            ]
        return sorted(
            held,
            key=lambda p: (p.contract.underlying, p.contract.expiry, p.contract.right.value,
                           p.contract.strike),
        )

    def share_positions(self) -> list[SharePosition]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM shares ORDER BY symbol").fetchall()
        return [SharePosition(r["symbol"], r["quantity"], r["avg_price"]) for r in rows]

    def account(self) -> BrokerAccount:
        """Cash, equity and buying power in dollars, marked at the broker's clock. Asked
        again with nothing written since and the same clock, the answer it gave (the marks
        are the market's quotes at that clock, a function of it)."""
        with self._lock:
            book = self._db.execute("SELECT cash, clock FROM book WHERE id = 1").fetchone()
            clock = None if book["clock"] is None else _time(book["clock"])
            if self._clock_unsaved is not None and (clock is None
                                                     or self._clock_unsaved > clock):
                clock = self._clock_unsaved
            key = (self._db.total_changes, clock)
            if self._account_cache is not None and self._account_cache[0] == key:
                return self._account_cache[1]
            account = self._capital(book["cash"], clock)
            self._account_cache = (key, account)
            return account

    # -- extras for tests and reconciliation ------------------------------------------------

    def submission_count(self, client_order_id: str) -> int:
        """How many ``submit`` calls carried this client order id, rejected duplicates included."""
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM submissions WHERE client_order_id = ?", (client_order_id,)
            ).fetchone()[0]

    def interest_paid(self, since: datetime | None = None) -> float:
        """Dollars of interest credited on idle cash in total, or by the credits booked at or
        after ``since`` (each credit covers the calendar days before the poll that booked
        it)."""
        with self._lock:
            if since is None:
                return float(self._db.execute(
                    "SELECT interest_paid FROM book WHERE id = 1").fetchone()[0])
            start = _aware(since)
            rows = self._db.execute("SELECT amount, time FROM interest").fetchall()
        return float(sum(r["amount"] for r in rows if _time(r["time"]) >= start))

    def settlements(self, since: datetime | None = None) -> list[Settlement]:
        """Every expiry settlement and early assignment booked at or after ``since`` (all if
        None), oldest first."""
        start = None if since is None else _aware(since)
        with self._lock:
            rows = self._db.execute("SELECT * FROM settlements ORDER BY seq").fetchall()
        if start is not None:
            rows = [r for r in rows if _time(r["time"]) >= start]
        return [
            Settlement(
                Contract.from_occ(r["occ"], r["multiplier"]), r["quantity"],
                r["underlying_price"], r["intrinsic"], r["amount"], _time(r["time"]),
                kind=r["kind"], shares=r["shares"],
                activity_id=f"{self._account}-act-{r['seq']:08d}",
            )
            for r in rows
        ]

    # -- internals ----------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; what it queued in ``_after_commit`` (the in-memory copies of state
        it wrote) runs once it is committed, and is dropped if it rolls back."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._after_commit.clear()
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            finally:
                hooks, self._after_commit = self._after_commit, []
            for hook in hooks:
                hook()

    def _saved_clock(self) -> datetime | None:
        """The broker's clock before this call: the later of the file's and the one in memory."""
        clock = self._db.execute("SELECT clock FROM book WHERE id = 1").fetchone()[0]
        saved = None if clock is None else _time(clock)
        if self._clock_unsaved is not None and (saved is None or self._clock_unsaved > saved):
            return self._clock_unsaved
        return saved

    def _credit_interest(self, now: datetime) -> None:
        """Credit the interest of every calendar day (New York) that has ended since the last
        credit, on the cash balance now, in this transaction; the first call only starts the
        count (no interest for days before the broker's first poll). Nothing is read or
        written while the cursor is current: one write a day."""
        assert self._interest is not None
        last = now.astimezone(NEW_YORK).date() - timedelta(days=1)
        through = self._interest_through
        if through is not None and through >= last:
            return
        if through is None:
            self._db.execute("UPDATE book SET interest_through = ? WHERE id = 1",
                             (last.isoformat(),))
        else:
            first = through + timedelta(days=1)
            cash = self._db.execute("SELECT cash FROM book WHERE id = 1").fetchone()[0]
            # The new balance, day by day: the same bits however the days are grouped into
            # credits (a driver polling every night or only in sessions books the same cash).
            grown = self._interest.grow(cash, first, last)
            amount = grown - cash
            self._db.execute(
                "UPDATE book SET cash = ?, interest_paid = interest_paid + ?, "
                "interest_through = ? WHERE id = 1", (grown, amount, last.isoformat()))
            self._db.execute(
                "INSERT INTO interest (first_day, last_day, balance, amount, time) "
                "VALUES (?, ?, ?, ?, ?)",
                (first.isoformat(), last.isoformat(), cash, amount, _iso(now)))
            self._log.info("interest_credited", first_day=first.isoformat(),
                           last_day=last.isoformat(), balance=cash, amount=amount)
        self._after_commit.append(lambda: setattr(self, "_interest_through", last))

    def _advance_clock(self, now: datetime) -> None:
        clock = self._db.execute("SELECT clock FROM book WHERE id = 1").fetchone()[0]
        if self._clock_unsaved is not None and self._clock_unsaved > now:
            now = self._clock_unsaved  # a later poll's clock, kept in memory until now
        self._clock_unsaved = None
        if clock is None or _time(clock) < now:
            self._db.execute("UPDATE book SET clock = ? WHERE id = 1", (_iso(now),))

    def _insert(self, order: OrderRequest | ShareOrder, now: datetime, rejected: str | None,
                reserved: float, replaces: str | None = None) -> None:
        status = OrderStatus.REJECTED if rejected else OrderStatus.NEW
        expires = None
        if order.time_in_force == "day" and rejected is None:
            expires = _iso(self._session_close(now))
        if isinstance(order, ShareOrder):
            # Share orders: no legs; the quantity is in shares, the side says which way.
            shares = ("shares", order.symbol, order.side, "[]", abs(order.quantity),
                      float(order.limit_price or 0.0))
        else:
            shares = ("options", None, None, _legs_json(order.legs), order.quantity,
                      float(order.limit_price))
        instrument, symbol, side, legs, quantity, limit = shares
        cursor = self._db.execute(
            "INSERT INTO orders (client_order_id, broker_order_id, status, opening, legs, "
            "quantity, limit_price, reserved, submitted_at, updated_at, reason, order_type, "
            "time_in_force, expires_at, replaces, instrument, symbol, side) "
            "VALUES (?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.client_order_id, status.value, int(order.opening), legs, quantity, limit,
                reserved, _iso(now), _iso(now), rejected, order.order_type,
                order.time_in_force, expires, replaces, instrument, symbol, side,
            ),
        )
        self._db.execute(
            "UPDATE orders SET broker_order_id = ? WHERE seq = ?",
            (f"{self._account}-{cursor.lastrowid:08d}", cursor.lastrowid),
        )

    def _session_close(self, now: datetime) -> datetime:
        """The close of the session a day order submitted at ``now`` belongs to: today's if it
        has not closed yet, else the next session's."""
        today = now.astimezone(NEW_YORK).date()
        if self._calendar.is_session(today) and now < self._calendar.session_close(today):
            return self._calendar.session_close(today)
        return self._calendar.session_close(
            self._calendar.next_session(today + timedelta(days=1))
        )

    def _expire_day_orders(self, now: datetime) -> None:
        for row in self._open_rows():
            expires = row["expires_at"]
            if expires is not None and _time(expires) <= now:
                self._db.execute(
                    "UPDATE orders SET status = ?, reserved = 0, updated_at = ?, reason = ? "
                    "WHERE seq = ?",
                    (OrderStatus.EXPIRED.value, _iso(now),
                     f"day order expired at the session close {expires}", row["seq"]),
                )
                self._log.info("order_expired", client_order_id=row["client_order_id"])

    def _order_row(self, client_order_id: str) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()

    def _open_rows(self) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT * FROM orders WHERE status IN (?, ?) ORDER BY seq",
            (OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value),
        ).fetchall()

    @staticmethod
    def _order(row: sqlite3.Row | None) -> BrokerOrder:
        assert row is not None
        return BrokerOrder(
            client_order_id=row["client_order_id"],
            broker_order_id=row["broker_order_id"],
            status=OrderStatus(row["status"]),
            quantity=row["quantity"],
            filled_quantity=row["filled_quantity"],
            limit_price=row["limit_price"],
            avg_fill_price=row["avg_fill_price"],
            submitted_at=_time(row["submitted_at"]),
            updated_at=_time(row["updated_at"]),
            reason=row["reason"],
            order_type=row["order_type"],
            time_in_force=row["time_in_force"],
            expires_at=None if row["expires_at"] is None else _time(row["expires_at"]),
            replaces=row["replaces"],
            replaced_by=row["replaced_by"],
        )

    @staticmethod
    def _fill(row: sqlite3.Row) -> Fill:
        return Fill(
            exec_id=row["exec_id"],
            client_order_id=row["client_order_id"],
            quantity=row["quantity"],
            price=row["price"],
            commission=row["commission"],
            time=_time(row["time"]),
        )

    def _held(self) -> dict[Contract, tuple[int, float]]:
        return {
            Contract.from_occ(r["occ"], r["multiplier"]): (r["quantity"], r["avg_price"])
            for r in self._db.execute("SELECT * FROM positions").fetchall()
        }

    def _quotes(self, legs: Iterable[Leg], now: datetime,
                coid: str) -> dict[Contract, Quote] | None:
        quotes: dict[Contract, Quote] = {}
        for leg in legs:
            try:
                quotes[leg.contract] = self._market.quote(leg.contract, now)
            except DataError as exc:
                self._log.debug("fill_skipped", client_order_id=coid, reason=str(exc))
                return None
        return quotes

    def _check(self, order: OrderRequest, now: datetime) -> tuple[str | None, float]:
        """Why the order must be rejected (or None), and the buying power it reserves."""
        legs = order.legs
        if order.account != self._account:
            return (
                f"order is for account {order.account!r}, this broker holds {self._account!r}",
                0.0,
            )
        underlyings = sorted({leg.contract.underlying for leg in legs})
        if len(underlyings) > 1:
            return f"legs are on different underlyings: {', '.join(underlyings)}", 0.0
        if len({leg.contract for leg in legs}) != len(legs):
            return "the same contract appears in two legs", 0.0
        if len({leg.contract.multiplier for leg in legs}) > 1:
            return "legs have different contract multipliers", 0.0
        for leg in legs:
            close = expiry_instant(leg.contract.expiry, leg.contract.underlying)
            if close <= now:
                return f"leg {leg.contract} expired at {close}", 0.0
        try:
            self._market.spot(underlyings[0], now)
        except DataError as exc:
            return f"unknown underlying {underlyings[0]!r}: {exc}", 0.0
        if order.opening:
            margin = defined_risk_margin(
                (leg.contract, leg.ratio * order.quantity) for leg in legs
            )
            if math.isinf(margin):
                return "undefined risk: the order is net short calls", 0.0
            multiplier = legs[0].contract.multiplier
            price = order.limit_price
            if order.order_type == "market":
                quotes = self._quotes(legs, now, order.client_order_id)
                if quotes is None:
                    return "a market order needs a usable quote for every leg", 0.0
                price = self._achievable(legs, quotes, order.quantity)
            credit = max(0.0, price) * multiplier * order.quantity
            debit = max(0.0, -price) * multiplier * order.quantity
            fees = self._fees.total(legs, order.quantity)
            need = max(0.0, margin - credit) + debit + fees
            book = self._db.execute("SELECT cash FROM book WHERE id = 1").fetchone()
            available = self._capital(book["cash"], now).buying_power
            if need > available + 1e-9:
                return (
                    f"insufficient buying power: the order needs ${need:,.2f} (margin "
                    f"${margin:,.2f} less credit ${credit:,.2f}, plus debit ${debit:,.2f} and "
                    f"fees ${fees:,.2f}), ${available:,.2f} is available",
                    0.0,
                )
            return None, need
        # Closing: every leg must reduce a held position, net of other open closing orders.
        held = self._held()
        committed: dict[Contract, int] = defaultdict(int)
        for row in self._open_rows():
            if not row["opening"]:
                for leg in _legs(row["legs"]):
                    committed[leg.contract] += leg.ratio * row["quantity"]
        for leg in legs:
            have = held.get(leg.contract, (0, 0.0))[0]
            pending = committed[leg.contract]
            change = leg.ratio * order.quantity
            remaining = have + pending  # what is left to close after other closing orders
            if remaining == 0 or change * remaining > 0 or abs(change) > abs(remaining):
                return (
                    f"closing leg {leg.contract} x{change:+d} does not match a held position "
                    f"(held {have:+d}, {pending:+d} already being closed)",
                    0.0,
                )
        return None, 0.0

    def _try_fill(self, row: sqlite3.Row, now: datetime, minutes: int = 1) -> None:
        """Execute what the fill model allows of an open order at ``now`` (see FillModel);
        ``minutes``: the session minutes since the order was last tried (``_minutes``)."""
        if row["instrument"] == "shares":
            self._try_fill_shares(row, now)
            return
        coid = row["client_order_id"]
        legs = _legs(row["legs"])
        quotes = self._quotes(legs, now, coid)
        if quotes is None:
            return
        model = self._fill_model
        natural = _natural(legs, quotes)
        achievable = self._achievable(legs, quotes)
        market = row["order_type"] == "market"
        # Impact only moves prices against the order: what cannot fill without it cannot
        # fill with it, so the (costlier) quantity caps come after this first look.
        if not market and not self._fills(row, legs, quotes, achievable, 0.0, now, minutes):
            return
        remaining = row["quantity"] - row["filled_quantity"]
        quantity = remaining
        if model.max_open_interest_share is not None:
            cap = self._open_interest_cap(legs, now)
            if cap is not None:
                quantity = min(quantity, cap - row["filled_quantity"])
                if quantity <= 0:
                    return
        if model.max_display_share is not None:
            displayed = _displayed(legs, quotes)
            quantity = min(remaining, math.floor(model.max_display_share * displayed + 1e-9))
            if quantity <= 0:
                return
        impact = 0.0
        if model.impact_half_spreads:
            half = sum(-leg.ratio * quotes[leg.contract].mid for leg in legs) - natural
            impact = model.impact(half, _displayed(legs, quotes, shown_only=True), quantity)
            if impact:
                achievable -= impact
                if not market and not self._fills(row, legs, quotes, achievable, impact, now,
                                                  minutes):
                    return
        if market:
            price = round(achievable, 6)
        else:
            price = row["limit_price"]
            if model.mode == "mid":
                price = max(price, round(achievable, 6))  # the mid's improvement on the limit
        fees = self._fees.total(legs, quantity)
        # Leg prices: each leg at its natural price, moved by an equal share of the gap between
        # the natural and the fill price so that they net to the fill price exactly.
        share = (natural - price) / sum(abs(leg.ratio) for leg in legs)
        leg_prices = {}
        for leg in legs:
            q = quotes[leg.contract]
            leg_prices[leg.contract] = q.ask + share if leg.is_long else q.bid - share
        for leg in legs:
            self._apply(leg.contract, leg.ratio * quantity, leg_prices[leg.contract])
        multiplier = legs[0].contract.multiplier
        self._record_fill(row, quantity, price, fees, price * multiplier * quantity - fees,
                          [[c.occ, p] for c, p in leg_prices.items()], now)

    def _record_fill(self, row: sqlite3.Row, quantity: int, price: float, fees: float,
                     cash: float, leg_prices: list, now: datetime) -> None:
        """Book one execution of the order ``row``: ``cash`` dollars moved, the fill, the
        order's progress and its remaining reservation."""
        coid = row["client_order_id"]
        remaining = row["quantity"] - row["filled_quantity"]
        self._db.execute("UPDATE book SET cash = cash + ? WHERE id = 1", (cash,))
        n = self._db.execute(
            "SELECT COUNT(*) FROM fills WHERE client_order_id = ?", (coid,)
        ).fetchone()[0]
        exec_id = f"{coid}-{n + 1}"
        self._db.execute(
            "INSERT INTO fills (exec_id, client_order_id, quantity, price, commission, time, "
            "leg_prices) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (exec_id, coid, quantity, price, fees, _iso(now), json.dumps(leg_prices)),
        )
        before = row["filled_quantity"]
        filled = before + quantity
        if before:
            avg = round((row["avg_fill_price"] * before + price * quantity) / filled, 10)
        else:
            avg = price
        status = OrderStatus.FILLED if filled == row["quantity"] else OrderStatus.PARTIALLY_FILLED
        reserved = row["reserved"] * (remaining - quantity) / remaining
        self._db.execute(
            "UPDATE orders SET status = ?, filled_quantity = ?, avg_fill_price = ?, "
            "reserved = ?, updated_at = ? WHERE seq = ?",
            (status.value, filled, avg, reserved, _iso(now), row["seq"]),
        )
        self._log.info(
            "order_filled", client_order_id=coid, exec_id=exec_id, quantity=quantity,
            price=price, commission=fees, status=status.value,
        )

    def _try_fill_shares(self, row: sqlite3.Row, now: datetime) -> None:
        """Fill an open share order in full if the share quote reaches it (see the docstring)."""
        try:
            bid, ask = _share_quote(self._market.spot(row["symbol"], now))
        except DataError as exc:
            self._log.debug("fill_skipped", client_order_id=row["client_order_id"],
                            reason=str(exc))
            return
        buy = row["side"] == "buy"
        slippage = self._fill_model.slippage_ticks * TICK
        natural = ask + slippage if buy else bid - slippage
        if row["order_type"] == "market":
            price = round(natural, 6)
        else:
            price = row["limit_price"]
            if (natural > price + 1e-9) if buy else (natural < price - 1e-9):
                return
        quantity = row["quantity"] - row["filled_quantity"]
        signed = quantity if buy else -quantity
        fees = self._fees.shares(signed)
        self._apply_shares(row["symbol"], signed, price)
        self._record_fill(row, quantity, price, fees, -signed * price - fees,
                          [[row["symbol"], price]], now)

    def _check_shares(self, order: ShareOrder, now: datetime) -> tuple[str | None, float]:
        """Why a share order must be rejected (or None), and the buying power it reserves."""
        if order.account != self._account:
            return (
                f"order is for account {order.account!r}, this broker holds {self._account!r}",
                0.0,
            )
        try:
            bid, ask = _share_quote(self._market.spot(order.symbol, now))
        except DataError as exc:
            return f"unknown symbol {order.symbol!r}: {exc}", 0.0
        if not order.opening:
            held = self._shares().get(order.symbol, (0, 0.0))[0]
            pending = sum(
                (r["quantity"] - r["filled_quantity"]) * (1 if r["side"] == "buy" else -1)
                for r in self._open_rows()
                if r["instrument"] == "shares" and not r["opening"] and r["symbol"] == order.symbol
            )
            remaining = held + pending
            change = order.quantity
            if remaining == 0 or change * remaining > 0 or abs(change) > abs(remaining):
                return (
                    f"closing {order.side} of {abs(change)} {order.symbol} does not reduce a "
                    f"held share position (held {held:+d}, {pending:+d} already being closed)",
                    0.0,
                )
            return None, 0.0
        price = order.limit_price if order.limit_price is not None else (
            ask if order.quantity > 0 else bid)
        fees = self._fees.shares(order.quantity)
        need = SHARE_MARGIN * abs(order.quantity) * price + fees
        cash = self._db.execute("SELECT cash FROM book WHERE id = 1").fetchone()["cash"]
        available = self._capital(cash, now).buying_power
        if need > available + 1e-9:
            return (
                f"insufficient buying power: {order.side} {abs(order.quantity)} "
                f"{order.symbol} needs ${need:,.2f} (half the notional plus fees), "
                f"${available:,.2f} is available",
                0.0,
            )
        return None, need

    def _shares(self) -> dict[str, tuple[int, float]]:
        return {r["symbol"]: (r["quantity"], r["avg_price"])
                for r in self._db.execute("SELECT * FROM shares").fetchall()}

    def _apply_shares(self, symbol: str, change: int, price: float) -> None:
        """Add ``change`` shares bought (> 0) or sold (< 0) at ``price`` per share."""
        quantity, avg = self._shares().get(symbol, (0, 0.0))
        new = quantity + change
        if new == 0:
            self._db.execute("DELETE FROM shares WHERE symbol = ?", (symbol,))
            return
        if quantity == 0 or quantity * new < 0:
            avg = price
        elif abs(new) > abs(quantity):
            avg = (abs(quantity) * avg + abs(change) * price) / abs(new)
        self._db.execute(
            "INSERT INTO shares (symbol, quantity, avg_price) VALUES (?, ?, ?) "
            "ON CONFLICT (symbol) DO UPDATE SET quantity = excluded.quantity, "
            "avg_price = excluded.avg_price",
            (symbol, new, avg),
        )

    def _achievable(self, legs: tuple[Leg, ...], quotes: dict[Contract, Quote],
                    quantity: int = 0) -> float:
        """The best net price per share the fill model gives now: natural ("limit") or mid
        ("mid"), less the slippage and, for an execution of ``quantity`` units, the impact."""
        model = self._fill_model
        mid = sum(-leg.ratio * quotes[leg.contract].mid for leg in legs)
        natural = _natural(legs, quotes)
        base = mid if model.mode == "mid" else natural
        impact = 0.0
        if quantity and model.impact_half_spreads:
            impact = model.impact(mid - natural, _displayed(legs, quotes, shown_only=True),
                                  quantity)
        return base - model.slippage_ticks * TICK - impact

    def _open_interest_cap(self, legs: tuple[Leg, ...], now: datetime) -> int | None:
        """floor(max_open_interest_share x the smallest open interest among the legs), in
        units of the combination; None when no leg's chain row gives open interest."""
        share = self._fill_model.max_open_interest_share
        found: list[int] = []
        for leg in legs:
            c = leg.contract
            dte = (c.expiry - now.astimezone(NEW_YORK).date()).days
            try:
                chain = self._market.chain(c.underlying, now, min_dte=dte, max_dte=dte)
            except DataError:
                continue
            for row in chain.rows(c.expiry, c.right):
                if row.contract == c and row.open_interest is not None:
                    found.append(row.open_interest // abs(leg.ratio))
                    break
        if not found:
            return None
        return math.floor(share * min(found) + 1e-9)

    def _fills(self, row: sqlite3.Row, legs: tuple[Leg, ...], quotes: dict[Contract, Quote],
               achievable: float, impact: float, now: datetime, minutes: int) -> bool:
        """Whether a limit order fills now: ``achievable`` (impact included) reaches its limit,
        or the mid-fill draw says so."""
        if achievable >= row["limit_price"] - 1e-9:
            return True
        return self._lucky(row, legs, quotes, achievable, impact, now, minutes)

    def _lucky(self, row: sqlite3.Row, legs: tuple[Leg, ...], quotes: dict[Contract, Quote],
               achievable: float, impact: float, now: datetime, minutes: int) -> bool:
        """Whether a limit between the mid and the achievable natural price fills this minute:
        chance x ** k with x = (mid - limit) / (mid - achievable), the mid moved by the
        ``impact`` as the natural is; per minute over ``minutes`` with
        ``mid_fill_per_minute``. One seeded draw per order and minute."""
        model = self._fill_model
        if not model.mid_fill_probability:
            return False
        mid = sum(-leg.ratio * quotes[leg.contract].mid for leg in legs) - impact
        limit = row["limit_price"]
        if mid <= achievable + 1e-9 or limit >= mid - 1e-9:
            return False
        probability = model.mid_fill_chance((mid - limit) / (mid - achievable))
        if model.mid_fill_per_minute:
            if minutes <= 0:
                return False  # this minute's draw was already taken
            probability = 1.0 - (1.0 - probability) ** minutes
        return bool(_draw(model.seed, row["client_order_id"], now) < probability)

    def _apply(self, contract: Contract, change: int, price: float) -> None:
        """Add ``change`` contracts bought (> 0) or sold (< 0) at ``price`` per share."""
        key = (contract.occ, contract.multiplier)
        row = self._db.execute(
            "SELECT quantity, avg_price FROM positions WHERE occ = ? AND multiplier = ?", key
        ).fetchone()
        quantity, avg = (0, 0.0) if row is None else (row["quantity"], row["avg_price"])
        new = quantity + change
        if new == 0:
            self._db.execute("DELETE FROM positions WHERE occ = ? AND multiplier = ?", key)
            return
        if quantity == 0 or quantity * new < 0:  # opening, or flipped through zero
            avg = price
        elif abs(new) > abs(quantity):  # adding to the position
            avg = (abs(quantity) * avg + abs(change) * price) / abs(new)
        self._db.execute(
            "INSERT INTO positions (occ, multiplier, quantity, avg_price) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (occ, multiplier) DO UPDATE SET quantity = excluded.quantity, "
            "avg_price = excluded.avg_price",
            (*key, new, avg),
        )

    def _settle_expired(self, now: datetime) -> None:
        for contract, (quantity, _) in sorted(self._held().items(), key=lambda kv: kv[0].occ):
            close = expiry_instant(contract.expiry, contract.underlying)
            if close <= now:
                self._settle(contract, quantity, self._market.spot(contract.underlying, close),
                             close, early=False)

    def _settle(self, contract: Contract, quantity: int, underlying_price: float,
                at: datetime, *, early: bool) -> None:
        """Remove an option position by expiry (or early assignment) and book what it left."""
        intrinsic = _intrinsic(contract, underlying_price)
        shares = 0
        if intrinsic < EXERCISE_THRESHOLD - 1e-9:
            kind, amount = "expired", 0.0
        elif (self._settlement == "cash" or contract.underlying in CASH_SETTLED) and not early:
            kind, amount = "cash_settled", quantity * contract.multiplier * intrinsic
        else:
            # Calls deliver shares to the long side, puts take them from it; at the strike.
            shares = quantity * contract.multiplier * (1 if contract.is_call else -1)
            amount = -shares * contract.strike
            kind = "early_assignment" if early else (
                "exercised" if quantity > 0 else "assigned")
            self._apply_shares(contract.underlying, shares, contract.strike)
        self._db.execute("UPDATE book SET cash = cash + ? WHERE id = 1", (amount,))
        self._db.execute(
            "DELETE FROM positions WHERE occ = ? AND multiplier = ?",
            (contract.occ, contract.multiplier),
        )
        self._db.execute(
            "INSERT INTO settlements (occ, multiplier, quantity, underlying_price, "
            "intrinsic, amount, time, kind, shares) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (contract.occ, contract.multiplier, quantity, underlying_price, intrinsic,
             amount, _iso(at), kind, shares),
        )
        self._log.info(
            "option_settled", kind=kind, contract=contract.occ, quantity=quantity,
            underlying_price=underlying_price, intrinsic=intrinsic, amount=amount,
            shares=shares,
        )

    def _assign_early(self, now: datetime) -> None:
        """Assign in-the-money short calls whose time value is below the coming dividend, at
        the close of the session before each ex-dividend date not yet handled."""
        assert self._early is not None
        book = self._db.execute("SELECT dividend_cursor FROM book WHERE id = 1").fetchone()
        today = now.astimezone(NEW_YORK).date()
        cursor = book["dividend_cursor"]
        first = (date.fromisoformat(cursor) + timedelta(days=1) if cursor
                 else today - timedelta(days=7))
        last = today + timedelta(days=7)
        for ex in self._early.ex_dates(first, last, self._calendar):
            before = self._calendar.session_close(self._calendar.previous_session(ex))
            if before > now:
                break
            for contract, (quantity, _) in sorted(self._held().items(),
                                                  key=lambda kv: kv[0].occ):
                yield_ = self._early.dividend_yields.get(contract.underlying, 0.0)
                if (quantity >= 0 or not contract.is_call or yield_ <= 0
                        or expiry_instant(contract.expiry, contract.underlying) <= before
                        or contract.expiry < ex):
                    continue
                try:
                    spot = self._market.spot(contract.underlying, before)
                    mid = self._market.quote(contract, before).mid
                except DataError as exc:
                    self._log.warning("early_assignment_skipped", contract=contract.occ,
                                      reason=str(exc))
                    continue
                dividend = spot * yield_ / 4.0
                intrinsic = _intrinsic(contract, spot)
                if intrinsic >= EXERCISE_THRESHOLD and mid - intrinsic < dividend:
                    self._settle(contract, quantity, spot, before, early=True)
            self._db.execute("UPDATE book SET dividend_cursor = ? WHERE id = 1",
                             (ex.isoformat(),))

    def _mark(self, contract: Contract, avg_price: float, at: datetime | None) -> float:
        """Value per share of one contract at ``at``: its mid; intrinsic at the expiry close if
        it has expired (not yet settled); its average price if there is no usable quote."""
        if at is None:
            return avg_price
        close = expiry_instant(contract.expiry, contract.underlying)
        try:
            if close <= at:
                return _intrinsic(contract, self._market.spot(contract.underlying, close))
            return self._market.quote(contract, at).mid
        except DataError as exc:
            self._log.warning("mark_unavailable", contract=contract.occ, reason=str(exc))
            return avg_price

    def _capital(self, cash: float, at: datetime | None) -> BrokerAccount:
        held = self._held()
        value = sum(
            quantity * contract.multiplier * self._mark(contract, avg, at)
            for contract, (quantity, avg) in held.items()
        )
        margin = defined_risk_margin((c, q) for c, (q, _) in held.items())
        for symbol, (quantity, avg) in self._shares().items():
            price = avg
            if at is not None:
                try:
                    price = self._market.spot(symbol, at)
                except DataError as exc:
                    self._log.warning("mark_unavailable", symbol=symbol, reason=str(exc))
            value += quantity * price
            margin += SHARE_MARGIN * abs(quantity) * price
        equity = cash + value
        reserved = sum(row["reserved"] for row in self._open_rows() if row["opening"])
        buying_power = max(0.0, equity - margin - reserved)
        return BrokerAccount(cash=cash, buying_power=buying_power, equity=equity)
