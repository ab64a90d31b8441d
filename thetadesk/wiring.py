"""Builds the configured adapters: the one place that maps config sections to ports."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from thetadesk.adapters.sim_broker import EarlyAssignment, Fees, FillModel, SimBroker
from thetadesk.adapters.sim_market import SimMarket, SimRegimes, SimSymbol
from thetadesk.config import AccountConfig, Config
from thetadesk.errors import DataError
from thetadesk.ports import Broker, MarketData

POLYGON_ENV = ("POLYGON_API_KEY",)
ALPACA_ENV = ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")


def required_env(config: Config) -> tuple[str, ...]:
    """The environment variables the configured vendors need (keys never live in config)."""
    names: list[str] = []
    if config.market.source == "polygon":
        names += POLYGON_ENV
    if config.market.source == "alpaca" or any(a.broker == "alpaca" for a in config.accounts):
        names += ALPACA_ENV
    return tuple(dict.fromkeys(names))


def missing_env(config: Config, env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(n for n in required_env(config) if not (env.get(n) or "").strip())


def build_market(config: Config) -> MarketData:
    m = config.market
    if m.source == "replay":
        from thetadesk.adapters.replay import HistoricalReplay

        spy = m.symbols["SPY"]
        return HistoricalReplay(symbols={"SPY": 0.1}, rate=m.rate,
                                dividend_yield=spy.dividend_yield,
                                strike_step=spy.strike_step, seed=config.seed)
    symbols = {
        name: SimSymbol(spot=s.spot, vol=s.vol, dividend_yield=s.dividend_yield,
                        strike_step=s.strike_step)
        for name, s in m.symbols.items()
    }
    sim = m.sim
    # SimRegimesConfig mirrors SimRegimes field for field, with the same defaults.
    regimes = SimRegimes(**sim.regimes.model_dump())
    extra = {} if sim.daily_expiries is None else {"daily_expiries": sim.daily_expiries}
    return SimMarket(seed=config.seed, symbols=symbols, rate=m.rate, start=m.start,
                     correlation=sim.correlation, regimes=regimes, **extra)


def paper_broker_path(state_dir: Path, account: str) -> Path:
    return Path(state_dir) / f"paper-{account}.db"


def build_broker(account: AccountConfig, market: MarketData, state_dir: Path, *,
                 dividend_yields: Mapping[str, float] | None = None) -> Broker:
    """The paper broker of ``account``. Without a ``fees`` section it charges only
    ``commission_per_contract``, and without ``fill_model`` it fills at the limit: as before.
    ``dividend_yields`` (per symbol, annual) drive early assignment when the account turns it
    on; ``dividend_yields_of(config)`` gives them."""
    fees = None
    if account.fees is not None:
        f = account.fees
        commission = f.commission_per_contract
        fees = Fees(
            commission_per_contract=(account.commission_per_contract if commission is None
                                     else commission),
            orf_per_contract=f.orf_per_contract,
            taf_per_contract_sold=f.taf_per_contract_sold,
            taf_cap=f.taf_cap,
            commission_per_share=f.commission_per_share,
            taf_per_share_sold=f.taf_per_share_sold,
        )
    fill_model = None
    if account.fill_model is not None:
        fm = account.fill_model
        fill_model = FillModel(
            mode=fm.mode,
            slippage_ticks=fm.slippage_ticks,
            mid_fill_probability=fm.mid_fill_probability,
            max_display_share=fm.max_display_share,
            seed=0 if fm.seed is None else fm.seed,  # Config fills in the top-level seed
        )
    early = None
    if account.early_assignment:
        if dividend_yields is None:
            raise DataError(f"account {account.name!r} has early_assignment on: build_broker "
                            "needs the symbols' dividend yields")
        early = EarlyAssignment(dict(dividend_yields))
    return SimBroker(account.name, market, paper_broker_path(state_dir, account.name),
                     starting_cash=account.starting_cash,
                     commission_per_contract=account.commission_per_contract,
                     fees=fees, fill_model=fill_model, settlement=account.settlement,
                     early_assignment=early)


def dividend_yields_of(config: Config) -> dict[str, float]:
    """Each configured underlying's annual dividend yield."""
    return {name: s.dividend_yield for name, s in config.market.symbols.items()}
