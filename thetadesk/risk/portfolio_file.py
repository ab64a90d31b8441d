"""Read a ``Portfolio`` from a YAML or JSON file (``scripts/stress.py --portfolio FILE``).

The file::

    rate: 0.04                          # continuously compounded, required
    underlyings:                        # required, at least one
      SPY: {spot: 600.0, vol: 0.18, dividend_yield: 0.012}   # dividend_yield optional (0)
      QQQ: {spot: 520.0, vol: 0.22}
    correlation: {SPY/QQQ: 0.9}         # optional; pairs not given are 0
    as_of: 2026-11-24T15:00:00Z         # required, with a time zone
    positions:                          # required (may be empty)
      - {symbol: SPY261218P00580000, qty: -10, iv: 0.2}      # iv optional (options only)
      - {symbol: SPY, qty: 100}                              # shares by ticker

JSON has the same keys (``as_of`` an ISO 8601 string). Every problem raises ``DataError`` whose
message starts with the field's path (``positions[2].qty: must be a non-zero integer, got
'ten'``); unknown keys and missing keys are named the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

import yaml

from thetadesk.errors import DataError
from thetadesk.risk.portfolio import Holding, Portfolio, UnderlyingState

__all__ = ["load_portfolio", "parse_portfolio"]

_TOP = {"rate": True, "underlyings": True, "correlation": False, "as_of": True,
        "positions": True}
_UNDERLYING = {"spot": True, "vol": True, "dividend_yield": False}
_POSITION = {"symbol": True, "qty": True, "iv": False}


def _keys(path: str, value: object, spec: Mapping[str, bool]) -> Mapping[str, object]:
    where = f"{path}: " if path else ""
    if not isinstance(value, Mapping):
        raise DataError(f"{where or 'portfolio file: '}must be a mapping, "
                        f"got {type(value).__name__}")
    for key in value:
        if key not in spec:
            raise DataError(f"{path + '.' if path else ''}{key}: unknown key (expected one of "
                            f"{', '.join(spec)})")
    for key, required in spec.items():
        if required and key not in value:
            raise DataError(f"{path + '.' if path else ''}{key}: missing")
    return value


def _number(path: str, value: object, *, positive: bool = False, low: float | None = None,
            high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{path}: must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise DataError(f"{path}: must be finite, got {value!r}")
    if positive and v <= 0:
        raise DataError(f"{path}: must be > 0, got {value!r}")
    if low is not None and v < low:
        raise DataError(f"{path}: must be >= {low:g}, got {value!r}")
    if high is not None and v > high:
        raise DataError(f"{path}: must be <= {high:g}, got {value!r}")
    return v


def _as_of(value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DataError(f"as_of: must be an ISO 8601 date-time with a time zone, "
                            f"got {value!r}") from None
    if not isinstance(value, datetime):
        kind = "a date without a time" if isinstance(value, date) else repr(value)
        raise DataError(f"as_of: must be an ISO 8601 date-time with a time zone, got {kind}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataError(f"as_of: must carry a time zone (e.g. 2026-11-24T15:00:00Z), "
                        f"got {value.isoformat()}")
    return value


def parse_portfolio(data: object) -> Portfolio:
    """A ``Portfolio`` from the file's parsed content (a mapping as described above)."""
    top = _keys("", data, _TOP)
    rate = _number("rate", top["rate"], low=-0.2, high=0.5)
    as_of = _as_of(top["as_of"])

    raw_unds = top["underlyings"]
    if not isinstance(raw_unds, Mapping) or not raw_unds:
        raise DataError(f"underlyings: must be a non-empty mapping of ticker to "
                        f"{{spot, vol, dividend_yield}}, got {raw_unds!r}")
    underlyings: dict[str, UnderlyingState] = {}
    for name, raw in raw_unds.items():
        path = f"underlyings.{name}"
        fields = _keys(path, raw, _UNDERLYING)
        spot = _number(f"{path}.spot", fields["spot"], positive=True)
        vol = _number(f"{path}.vol", fields["vol"], positive=True, high=5.0)
        q = _number(f"{path}.dividend_yield", fields.get("dividend_yield", 0.0), low=-0.2,
                    high=0.2)
        try:
            underlyings[str(name)] = UnderlyingState(str(name), spot, vol, q)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    raw_corr = top.get("correlation") or {}
    if not isinstance(raw_corr, Mapping):
        raise DataError(f"correlation: must be a mapping like {{SPY/QQQ: 0.9}}, got {raw_corr!r}")
    correlation: dict[str, float] = {}
    for key, value in raw_corr.items():
        path = f"correlation.{key}"
        names = str(key).split("/")
        if len(names) != 2 or names[0] == names[1]:
            raise DataError(f"{path}: must name two different underlyings as A/B")
        for name in names:
            if name not in underlyings:
                raise DataError(f"{path}: {name} is not among the underlyings "
                                f"({', '.join(sorted(underlyings))})")
        correlation[str(key)] = _number(path, value, low=-1.0, high=1.0)

    raw_pos = top["positions"]
    if not isinstance(raw_pos, list):
        raise DataError(f"positions: must be a list of {{symbol, qty}}, got {raw_pos!r}")
    holdings = []
    for i, raw in enumerate(raw_pos):
        path = f"positions[{i}]"
        fields = _keys(path, raw, _POSITION)
        symbol, qty = fields["symbol"], fields["qty"]
        if not isinstance(symbol, str) or not symbol.strip():
            raise DataError(f"{path}.symbol: must be an OCC option symbol or a ticker, "
                            f"got {symbol!r}")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty == 0:
            raise DataError(f"{path}.qty: must be a non-zero integer, got {qty!r}")
        iv = fields.get("iv")
        if iv is not None:
            iv = _number(f"{path}.iv", iv, positive=True, high=5.0)
        try:
            holding = Holding(symbol.strip(), qty, iv)
        except DataError as exc:
            field = "iv" if iv is not None and "implied volatility" in str(exc) else "symbol"
            raise DataError(f"{path}.{field}: {exc}") from None
        if holding.underlying not in underlyings:
            raise DataError(f"{path}.symbol: underlying {holding.underlying} of {symbol} is not "
                            f"among the underlyings ({', '.join(sorted(underlyings))})")
        try:
            Portfolio(as_of, rate, underlyings, (holding,))
        except DataError as exc:  # e.g. expired before as_of
            raise DataError(f"{path}.symbol: {exc}") from None
        holdings.append(holding)

    try:
        return Portfolio(as_of, rate, underlyings, tuple(holdings), correlation)
    except DataError as exc:
        field = "correlation" if "correlation" in str(exc) else "portfolio"
        raise DataError(f"{field}: {exc}") from None


def load_portfolio(path: str | Path) -> Portfolio:
    """Read and validate a portfolio file: JSON for ``.json``, YAML for ``.yaml``/``.yml``, and
    otherwise JSON if the content starts with ``{``, else YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the portfolio file ({exc.strerror})") from None
    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (suffix not in {".yaml", ".yml"}
                                    and text.lstrip().startswith("{"))
    try:
        data = json.loads(text) if as_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: not valid {'JSON' if as_json else 'YAML'}: {exc}") from None
    try:
        return parse_portfolio(data)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
