"""Builds the configured adapters: the one place that maps config sections to ports."""

from __future__ import annotations

from pathlib import Path

from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.config import AccountConfig, Config
from thetadesk.ports import Broker, MarketData


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
    return SimMarket(seed=config.seed, symbols=symbols, rate=m.rate, start=m.start)


def paper_broker_path(state_dir: Path, account: str) -> Path:
    return Path(state_dir) / f"paper-{account}.db"


def build_broker(account: AccountConfig, market: MarketData, state_dir: Path) -> Broker:
    return SimBroker(account.name, market, paper_broker_path(state_dir, account.name),
                     starting_cash=account.starting_cash,
                     commission_per_contract=account.commission_per_contract)
