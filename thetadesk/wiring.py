"""Builds the configured adapters: the one place that maps config sections to ports."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from thetadesk.adapters.sim_broker import EarlyAssignment, Fees, FillModel, SimBroker
from thetadesk.adapters.sim_market import SimMarket, SimRegimes, SimShock, SimSymbol
from thetadesk.config import REPLAY_SERIES, AccountConfig, Config
from thetadesk.errors import DataError
from thetadesk.models import Fill
from thetadesk.ports import Broker, MarketData
from thetadesk.rates import CashInterest

POLYGON_ENV = ("POLYGON_API_KEY",)
ALPACA_ENV = ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")

# Where the vendor clients connect when these are set (a local server in tests, a proxy);
# unset, each client uses the vendor's own host (Alpaca: paper or live from the config).
ENV_POLYGON_BASE_URL = "THETADESK_POLYGON_BASE_URL"
ENV_ALPACA_TRADING_URL = "THETADESK_ALPACA_TRADING_URL"
ENV_ALPACA_DATA_URL = "THETADESK_ALPACA_DATA_URL"
ENV_ALPACA_STREAM_URL = "THETADESK_ALPACA_STREAM_URL"

BUDGET_FILE = "vendor-budget.db"  # in the state dir: one request budget per key for all actors


def required_env(config: Config) -> tuple[str, ...]:
    """The environment variables the configured vendors need (keys never live in config)."""
    names: list[str] = []
    if config.market.source == "polygon":
        names += POLYGON_ENV
    if config.market.source == "alpaca":
        names += ALPACA_ENV
    for account in config.accounts:
        if account.broker == "alpaca":
            names += [account.alpaca.api_key_env, account.alpaca.secret_key_env]
    return tuple(dict.fromkeys(names))


def missing_env(config: Config, env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(n for n in required_env(config) if not (env.get(n) or "").strip())


def _url(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value.rstrip("/") or None


def build_market(config: Config, *, state_dir: Path | None = None,
                 env: Mapping[str, str] = os.environ,
                 whole_expiries: bool = True) -> MarketData:
    """The configured market. Live sources read their keys from ``env`` (ConfigError naming a
    missing one) and, given ``state_dir``, spend one request budget shared with every other
    process of the run (``vendor-budget.db`` there). ``whole_expiries=False``: the simulator
    prices only the contracts quoted (``SimMarket``), for an account process, which quotes its
    own book and reads no chains; the answers are the same."""
    m = config.market
    if m.live:
        shared = None if state_dir is None else Path(state_dir) / BUDGET_FILE
        yields = dividend_yields_of(config)
        if m.source == "polygon":
            from thetadesk.adapters.polygon import PolygonMarketData, PolygonSettings

            p = m.polygon
            return PolygonMarketData(
                PolygonSettings.from_env(env), base_url=_url(env, ENV_POLYGON_BASE_URL),
                requests_per_minute=p.requests_per_minute, cache_ttl_s=p.cache_ttl_s,
                max_reject_fraction=p.max_reject_fraction,
                max_quote_age_s=p.max_quote_age_s, max_spot_age_s=p.max_quote_age_s,
                rate=m.rate, dividend_yields=yields, shared_budget_path=shared)
        from thetadesk.adapters.alpaca_data import AlpacaDataSettings, AlpacaMarketData

        a = m.alpaca
        return AlpacaMarketData(
            AlpacaDataSettings.from_env(env), url_override=_url(env, ENV_ALPACA_DATA_URL),
            option_feed=a.feed, requests_per_minute=a.requests_per_minute,
            cache_ttl_s=a.cache_ttl_s, max_reject_fraction=a.max_reject_fraction,
            max_quote_age_s=a.max_quote_age_s, max_spot_age_s=a.max_quote_age_s, rate=m.rate,
            dividend_yields=yields, paper=a.paper,
            trading_url_override=_url(env, ENV_ALPACA_TRADING_URL),
            open_interest=a.open_interest, shared_budget_path=shared)
    if m.source == "replay":
        from thetadesk.adapters.replay import HistoricalReplay

        series = {name: REPLAY_SERIES[name] for name in m.symbols}
        return HistoricalReplay(
            symbols={name: scale for name, (_, scale, _) in series.items()},
            indices={name: index for name, (index, _, _) in series.items()},
            rate=m.rate,
            dividend_yield={name: c.dividend_yield for name, c in m.symbols.items()},
            strike_step={name: step for name, (_, _, step) in series.items()},
            seed=config.seed,
            atm_vix_ratio=m.replay.atm_vix_ratio,
            spot_vol_beta=m.replay.spot_vol_beta,
        )
    symbols = {
        name: SimSymbol(spot=s.spot, vol=s.vol, dividend_yield=s.dividend_yield,
                        strike_step=s.strike_step)
        for name, s in m.symbols.items()
    }
    sim = m.sim
    # SimRegimesConfig mirrors SimRegimes field for field, with the same defaults.
    regimes = SimRegimes(**sim.regimes.model_dump())
    extra = {} if sim.daily_expiries is None else {"daily_expiries": sim.daily_expiries}
    shocks = tuple(SimShock(s.date, s.gap, s.vol_multiplier) for s in sim.shocks)
    return SimMarket(seed=config.seed, symbols=symbols, rate=m.rate, start=m.start,
                     correlation=sim.correlation, regimes=regimes, shocks=shocks,
                     whole_expiries=whole_expiries, vix_options=sim.vix_options, **extra)


def paper_broker_path(state_dir: Path, account: str) -> Path:
    return Path(state_dir) / f"paper-{account}.db"


def build_broker(account: AccountConfig, market: MarketData, state_dir: Path, *,
                 dividend_yields: Mapping[str, float] | None = None,
                 env: Mapping[str, str] = os.environ,
                 recorded_fills: Iterable[Fill] = (), durable: bool = True) -> Broker:
    """The broker of ``account``.

    ``broker: alpaca``: an ``AlpacaBroker`` with the account's keys from ``env``, seeded with
    ``recorded_fills`` (the ledger's fills of this account, so executions split across a restart
    are not counted twice) and, when ``alpaca.stream`` is on, the trade-updates stream started.

    ``broker: sim``: the paper broker. Without a ``fees`` section it charges only
    ``commission_per_contract``, without ``fill_model`` it fills at the limit, and without
    ``cash_interest`` its cash earns nothing: as before.
    ``dividend_yields`` (per symbol, annual) drive early assignment when the account turns it
    on; ``dividend_yields_of(config)`` gives them. ``durable=False``: a scratch paper broker
    (a backtest's) whose commits are not waited onto the disk."""
    if account.broker == "alpaca":
        return _alpaca_broker(account, env, recorded_fills)
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
            max_open_interest_share=fm.max_open_interest_share,
            mid_fill_exponent=fm.mid_fill_exponent,
            mid_fill_per_minute=fm.mid_fill_per_minute,
            impact_half_spreads=fm.impact_half_spreads,
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
                     early_assignment=early, cash_interest=cash_interest_of(account),
                     durable=durable)


def cash_interest_of(account: AccountConfig) -> CashInterest | None:
    """What the account's idle cash earns in the paper broker (None: nothing), for the broker
    and for baselines that must earn the same (``backtest.baselines``: pass its ``daily``)."""
    ci = account.cash_interest
    if ci is None or account.broker != "sim":
        return None
    return CashInterest(rate=ci.rate, spread=ci.spread, day_count=ci.day_count)


def dividend_yields_of(config: Config) -> dict[str, float]:
    """Each configured underlying's annual dividend yield."""
    return {name: s.dividend_yield for name, s in config.market.symbols.items()}


def _alpaca_broker(account: AccountConfig, env: Mapping[str, str],
                   recorded_fills: Iterable[Fill]) -> Broker:
    from thetadesk.adapters.alpaca import AlpacaBroker, AlpacaSettings
    from thetadesk.adapters.alpaca_stream import AlpacaTradeUpdates

    a = account.alpaca
    settings = AlpacaSettings.from_env(env, a.api_key_env, a.secret_key_env)
    broker = AlpacaBroker(settings, paper=a.paper, account_name=account.name,
                          url_override=_url(env, ENV_ALPACA_TRADING_URL), timeout_s=a.timeout_s)
    broker.restore_fills(recorded_fills)
    if a.stream:
        AlpacaTradeUpdates(settings, broker, paper=a.paper,
                           url_override=_url(env, ENV_ALPACA_STREAM_URL),
                           grace_s=a.stream_grace_s).start()
    return broker


def build_risk_engine(config: Config, ledger, market, *, breakers: bool = True):
    """The risk gate (``thetadesk.risk.engine.RiskEngine``) over ``ledger``, pricing books from
    ``market``: every account's limits and breakers, the global limits and breaker, the stress
    scenarios of ``risk_reports``. ``breakers`` False: the daily loss breaker only (a hedge
    engine measuring books needs no other)."""
    from thetadesk.risk.breakers import breaker_limits_from_config
    from thetadesk.risk.engine import RiskEngine, limits_from_config
    from thetadesk.risk.gate import (
        SnapshotBuilder,
        global_limits_from_config,
        portfolio_limits_from_config,
    )
    from thetadesk.risk.scenarios import DEFAULT_SCENARIOS, scenarios_from_config

    reports = config.risk_reports
    stress = (DEFAULT_SCENARIOS if reports.stress_scenarios is None
              else scenarios_from_config(reports.stress_scenarios))
    return RiskEngine(ledger, limits_from_config(config), portfolio_limits_from_config(config),
                      SnapshotBuilder.from_config(config, market),
                      beta_window=reports.beta_window, stress=stress,
                      breakers=breaker_limits_from_config(config) if breakers else None,
                      global_limits=global_limits_from_config(config))


def build_hedge_engine(config: Config, ledger, market):
    """The hedging logic (``thetadesk.hedging.HedgeEngine``) over ``ledger`` and ``market``,
    measuring books with the risk gate's own engine (same limits, snapshots and betas)."""
    from thetadesk.hedging import HedgeEngine, HedgeRules

    risk = build_risk_engine(config, ledger, market, breakers=False)
    return HedgeEngine(ledger, risk, market, HedgeRules.from_config(config.hedging),
                       {a.name: a.risk.max_var99 for a in config.accounts},
                       {s: c.vol for s, c in config.market.symbols.items()})
