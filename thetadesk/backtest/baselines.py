"""What a person could get without ThetaDesk, on the same data, sessions and capital.

- ``buy_and_hold``: all the capital in the underlying at the first session's open, or the
  first price after it (whole shares, the rest in cash), held to the end; equity at each
  close. Price return only: the data sources carry no dividend payments.
- ``put_write``: a naive monthly at-the-money put-write, cash-secured, after the CBOE PUT
  index: with no put held, at 10:00 New York (or the first tick after) sell puts at the strike
  nearest the spot, the listed expiry nearest 30 days out (at least 20), as many as the cash
  secures (strike x 100 each), at the BID (a seller crossing the spread) less the account's
  commission per contract. Held to expiry, then settled at intrinsic against the close (cash
  out), and the next one is sold the session after. Equity at each close: cash less the put
  marked at its mid (intrinsic if no quote). Each settled put records its commission and the
  spread given up on the sale, (mid - bid) x multiplier x contracts (its costs paid; settling
  at expiry costs nothing); ``put_write_run`` adds the closes with a put held (exposure) and
  the costs of every sale, the one still held at the end included.

Both return equity per session in the order of ``sessions`` and are read with the same metrics
as the backtest (``thetadesk.analytics.metrics``).

Interest (``daily_rate``, off by default): what ONE dollar of cash earns on a calendar day, a
function of the day (``thetadesk.rates.CashInterest.daily``; ``wiring.cash_interest_of(account)``
gives the account's, so a baseline earns what the desk's idle cash earns in the same run). As in
the paper broker, every calendar day from the first session on earns interest on the positive
cash balance, credited (compounding daily) at the start of the next session for the days since
the last credit: a session's equity includes the interest of the days before it. Buy and hold
earns it on the cash left over from whole shares; the put-write on all its cash, the collateral
securing the put included (the Cboe PUT index earns T-bill interest on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from thetadesk.clock import MarketCalendar
from thetadesk.errors import DataError
from thetadesk.models import Contract, Right
from thetadesk.ports import MarketData

__all__ = ["PutWriteRun", "PutWriteTrade", "buy_and_hold", "put_write", "put_write_run"]

_SELL_AFTER_OPEN = timedelta(minutes=30)
_TARGET_DTE, _MIN_DTE, _MAX_DTE = 30, 20, 50


@dataclass(frozen=True, slots=True)
class PutWriteTrade:
    sold: date
    expiry: date
    strike: float
    contracts: int
    premium: float  # per share, at the bid
    pnl: float  # dollars, after commission
    commission: float = 0.0  # dollars paid on the sale
    spread: float = 0.0  # dollars given up against the mid on the sale: (mid - bid) x 100 x n


DailyRate = Callable[[date], float]  # what one dollar earns on a calendar day, a decimal


class _Interest:
    """Credits interest on a cash balance day by day, as the paper broker does (see above)."""

    def __init__(self, daily_rate: DailyRate | None, first: date) -> None:
        self.rate = daily_rate
        self.through = first - timedelta(days=1)

    def credit(self, cash: float, today: date) -> float:
        """``cash`` with the interest of the days from the last credit to ``today`` (not
        included) added."""
        if self.rate is None:
            return cash
        day = self.through + timedelta(days=1)
        while day < today:
            cash += max(0.0, cash) * self.rate(day)
            day += timedelta(days=1)
        self.through = max(self.through, today - timedelta(days=1))
        return cash


def buy_and_hold(market: MarketData, symbol: str, sessions: Sequence[date], capital: float,
                 calendar: MarketCalendar | None = None, *,
                 daily_rate: DailyRate | None = None) -> list[float]:
    """Equity per session of buying ``capital``'s worth of whole shares at the first session's
    open and holding them; the cash left over earns ``daily_rate`` (see the module docs)."""
    calendar = calendar or MarketCalendar()
    if not sessions:
        return []
    price = None
    for when in [calendar.session_open(sessions[0]), *calendar.ticks(sessions[0], 60)]:
        try:  # the open, or the first price after it (users' bars labelled by their end)
            price = market.spot(symbol, when)
            break
        except DataError:
            continue
    if price is None:
        raise DataError(f"buy and hold: no {symbol} price in the first session {sessions[0]}")
    shares = math.floor(capital / price)
    cash = capital - shares * price
    interest = _Interest(daily_rate, sessions[0])
    equity = []
    for d in sessions:
        cash = interest.credit(cash, d)
        equity.append(cash + shares * market.spot(symbol, calendar.session_close(d)))
    return equity


def _put_mark(market: MarketData, contract: Contract, spot: float, when) -> float:
    try:
        return market.quote(contract, when).mid
    except DataError:
        return max(contract.strike - spot, 0.0)


@dataclass(frozen=True, slots=True)
class PutWriteRun:
    """A put-write over the sessions: ``equity`` at each close, the ``trades`` (puts sold and
    settled), ``held_sessions`` (closes with a put held), ``sales`` (puts sold, a put still
    held at the end included) and the costs of every sale: ``commissions`` and ``spread`` in
    dollars."""

    equity: list[float]
    trades: list[PutWriteTrade]
    held_sessions: int
    sales: int
    commissions: float
    spread: float


def put_write(market: MarketData, symbol: str, sessions: Sequence[date], capital: float, *,
              commission: float = 0.65, calendar: MarketCalendar | None = None,
              daily_rate: DailyRate | None = None,
              ) -> tuple[list[float], list[PutWriteTrade]]:
    """Equity per session and the puts sold (see the module docs); the cash, collateral
    included, earns ``daily_rate``."""
    run = put_write_run(market, symbol, sessions, capital, commission=commission,
                        calendar=calendar, daily_rate=daily_rate)
    return run.equity, run.trades


def put_write_run(market: MarketData, symbol: str, sessions: Sequence[date], capital: float,
                  *, commission: float = 0.65, calendar: MarketCalendar | None = None,
                  daily_rate: DailyRate | None = None,
                  ) -> PutWriteRun:
    """``put_write`` with its exposure and costs (``PutWriteRun``); the cash, collateral
    included, earns ``daily_rate`` (see the module docs)."""
    calendar = calendar or MarketCalendar()
    cash = capital
    held: tuple[Contract, int, float, date, float] | None = None
    equity: list[float] = []
    trades: list[PutWriteTrade] = []
    held_sessions = sales = 0
    commissions = spread_paid = 0.0
    interest = _Interest(daily_rate, sessions[0]) if sessions else None
    for i, d in enumerate(sessions):
        assert interest is not None
        cash = interest.credit(cash, d)
        close = calendar.session_close(d)
        if held is None and i < len(sessions) - 1:
            when = calendar.session_open(d) + _SELL_AFTER_OPEN
            try:
                chain = market.chain(symbol, when, min_dte=_MIN_DTE, max_dte=_MAX_DTE)
                expiry = chain.nearest_expiry(_TARGET_DTE, min_dte=_MIN_DTE)
                puts = chain.rows(expiry, Right.PUT)
                row = min(puts, key=lambda r: (abs(r.contract.strike - chain.spot),
                                               r.contract.strike))
            except (DataError, ValueError):
                row = None
            if row is not None and row.quote.bid > 0:
                n = math.floor(cash / (row.contract.strike * row.contract.multiplier))
                if n > 0:
                    premium = row.quote.bid
                    cash += premium * row.contract.multiplier * n - commission * n
                    held = (row.contract, n, premium, d,
                            (row.quote.mid - premium) * row.contract.multiplier * n)
                    sales += 1
                    commissions += commission * n
                    spread_paid += held[4]
        spot = market.spot(symbol, close)
        if held is not None:
            contract, n, premium, sold, spread = held
            if contract.expiry <= d:
                payout = max(contract.strike - spot, 0.0) * contract.multiplier * n
                cash -= payout
                trades.append(PutWriteTrade(sold, contract.expiry, contract.strike, n, premium,
                                            premium * contract.multiplier * n - commission * n
                                            - payout, commission * n, spread))
                held = None
                equity.append(cash)
                continue
            mark = _put_mark(market, contract, spot, close - timedelta(minutes=1))
            equity.append(cash - mark * contract.multiplier * n)
            held_sessions += 1
        else:
            equity.append(cash)
    return PutWriteRun(equity, trades, held_sessions, sales, commissions, spread_paid)
