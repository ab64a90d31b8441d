"""Black-Scholes-Merton prices, Greeks and implied volatility, vectorised and exact.

Conventions (fixed; every caller relies on them):

- ``S`` spot, ``K`` strike, both > 0, in the same currency units (per share, not per contract).
- ``T`` time to expiry in years (> = 0). ``r`` and ``q`` are continuously compounded annual rates
  (risk-free rate and dividend yield); either may be negative. ``sigma`` is the annualised
  volatility as a fraction (0.20 is 20%), > = 0.
- ``is_call`` is True for a call, False for a put.
- delta is per 1.00 of spot, gamma per 1.00 of spot squared.
- **vega is per 1.00 of volatility** (divide by 100 for "per vol point").
- **theta is per year of calendar time**, the derivative of the price with respect to time
  passing (that is ``-dV/dT``), so it is negative for a long vanilla option in ordinary markets.
  Divide by 365 for "per calendar day".
- **rho is per 1.00 of rate** (divide by 100 for "per percentage point").

Every argument broadcasts like numpy arrays; scalars give numpy scalars back. Bad elements never
raise and never print a numpy warning: an element gets NaN (in every output) when

- ``S`` or ``K`` is not finite or not > 0,
- ``T`` or ``sigma`` is not finite or negative,
- ``r`` or ``q`` is not finite,
- (``implied_vol`` only) the price is not finite, ``T`` is 0, or the price lies outside the
  no-arbitrage bounds ``[intrinsic, upper)`` where intrinsic is ``max(±(S e^{-qT} - K e^{-rT}), 0)``
  and the upper bound is ``S e^{-qT}`` for a call, ``K e^{-rT}`` for a put. The bounds are
  computed in floating point, so prices within 4 ulps of ``max(S e^{-qT}, K e^{-rT})`` of a
  bound count as at it: at the upper bound the volatility is unbounded (NaN), at a positive
  intrinsic value it is 0. Out of the money (intrinsic exactly 0) any price > 0 is solved.

Expiry and zero volatility (``T -> 0`` or ``sigma -> 0``) give the discounted intrinsic value on the
forward and finite Greeks: delta is the discounted indicator of being in the money (half of it
exactly at the money), gamma and vega are 0 (vega exactly at the money keeps its finite limit),
theta and rho are those of the deterministic payoff. A total volatility ``sigma*sqrt(T)`` below
1e-100 counts as zero.

The kernels (``thetadesk/pricing_kernels.py``) are plain Python that numba compiles
(``cache=True``: the first call in a fresh environment compiles for a few seconds, later
processes load the cache). A process loads numba only when it first prices more than a few
elements at once, or calls ``compile_kernels``: until then a call on at most
``INTERPRETED_MAX_ELEMENTS`` elements runs the same kernels as Python, which gives the same bits
(the C library's ``math`` in both, IEEE arithmetic in both) at about 20 us an element, and
saves the process the ~45 MB numba's runtime costs. A process that has loaded numba uses it for
every call.
"""

from __future__ import annotations

import math
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from thetadesk import pricing_kernels

__all__ = ["BSMGreeks", "bsm_greeks", "bsm_price", "compile_kernels", "compile_namespace",
           "implied_vol", "kernels_compiled"]


class BSMGreeks(NamedTuple):
    """Price and Greeks, each an array (or numpy scalar) of the broadcast shape.

    Units: see the module docstring (vega and rho per 1.00, theta per year of calendar time).
    """

    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray


# ---------------------------------------------------------------------------------------------
# The two ways to run the kernels

_JIT_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "nogil": True}
INTERPRETED_MAX_ELEMENTS = 16  # above this a call loads numba: ~20 us an element adds up


class _Kernels(NamedTuple):
    price: Callable[..., None]
    greeks: Callable[..., None]
    iv: Callable[..., None]


_INTERPRETED = _Kernels(pricing_kernels._price_kernel, pricing_kernels._greeks_kernel,
                        pricing_kernels._iv_kernel)
_compiled: _Kernels | None = None
_compile_lock = threading.RLock()


def jit(func):
    """numba's ``njit`` with the pricing kernels' options, for the kernels of other modules
    (the replay's surface). Imports numba."""
    from numba import njit

    return njit(**_JIT_OPTIONS)(func)


def compile_kernels() -> None:
    """Load numba and the compiled kernels in this process (from numba's cache after the first
    time); every later call then runs compiled. Idempotent and thread-safe."""
    _compiled_kernels()


def kernels_compiled() -> bool:
    """Whether this process runs the compiled kernels (has loaded numba for them)."""
    return _compiled is not None


def compile_namespace(module: types.ModuleType, names: Sequence[str]) -> dict[str, Any]:
    """``module``'s functions ``names`` compiled with numba (the pricing kernels' options), in
    a namespace of their own: a copy of the module's globals in which each of these names is
    the compiled function, so that their calls to each other run compiled while the module
    itself stays plain Python. Imports numba; numba's cache works as for decorated functions."""
    from numba import njit

    with _compile_lock:
        space = dict(vars(module))
        for name in names:
            f = space[name]
            space[name] = njit(**_JIT_OPTIONS)(types.FunctionType(
                f.__code__, space, f.__name__, f.__defaults__, f.__closure__))
    return space


def _compiled_kernels() -> _Kernels:
    global _compiled
    if _compiled is None:
        with _compile_lock:
            if _compiled is None:
                space = compile_namespace(pricing_kernels, pricing_kernels.KERNELS)
                _compiled = _Kernels(space["_price_kernel"], space["_greeks_kernel"],
                                     space["_iv_kernel"])
    return _compiled


def _run(which: int, n: int, *args: np.ndarray) -> None:
    """Kernel ``which`` (an index into ``_Kernels``) over ``args`` (inputs then outputs)."""
    if _compiled is None and n <= INTERPRETED_MAX_ELEMENTS:
        try:
            with np.errstate(all="ignore"):  # numpy scalars give inf/NaN, as compiled code does
                _INTERPRETED[which](*args)
            return
        except (ArithmeticError, ValueError, TypeError):
            pass  # where Python raises (log of 0, x / 0.0) compiled code has the answer
    _compiled_kernels()[which](*args)


# ---------------------------------------------------------------------------------------------
# Public API


def _flat(*args):
    arrays = [np.asarray(a, dtype=np.float64) for a in args[:-1]]
    calls = np.asarray(args[-1], dtype=np.bool_)
    everything = [*arrays, calls]
    # The common case (scalars and contiguous vectors of one length) needs no broadcasting:
    # the kernels read a length-1 input as a scalar.
    sizes = {a.shape[0] for a in everything if a.ndim == 1 and a.shape[0] != 1}
    if (len(sizes) == 1 and all(a.ndim <= 1 for a in everything)
            and all(a.flags.c_contiguous for a in everything)):
        n = sizes.pop()
        return [a if a.ndim == 1 else a.reshape(1) for a in everything], (n,), n
    shape = np.broadcast_shapes(*(a.shape for a in arrays), calls.shape)
    flat = []
    for a in [*arrays, calls]:
        if a.size == 1:
            flat.append(np.ascontiguousarray(a.reshape(1)))
        else:
            flat.append(np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1))
    n = math.prod(shape)
    return flat, shape, n


def _shaped(a: np.ndarray, shape: tuple[int, ...]):
    a = a.reshape(shape)
    return a[()] if shape == () else a


def bsm_price(S, K, T, r, sigma, q=0.0, is_call=True):
    """Black-Scholes-Merton option price with continuous dividend yield ``q``.

    Arguments broadcast; see the module docstring for units and for when an element is NaN.
    """
    flat, shape, n = _flat(S, K, T, r, sigma, q, is_call)
    out = np.empty(n)
    _run(0, n, *flat, out)
    return _shaped(out, shape)


def bsm_greeks(S, K, T, r, sigma, q=0.0, is_call=True) -> BSMGreeks:
    """Price, delta, gamma, vega, theta and rho in one pass.

    Vega per 1.00 of volatility, theta per year of calendar time passing (``-dV/dT``, negative for
    a long vanilla option in ordinary markets), rho per 1.00 of rate; T in years.
    """
    flat, shape, n = _flat(S, K, T, r, sigma, q, is_call)
    outs = [np.empty(n) for _ in range(6)]
    _run(1, n, *flat, *outs)
    return BSMGreeks(*(_shaped(o, shape) for o in outs))


def implied_vol(price, S, K, T, r, q=0.0, is_call=True):
    """Black-Scholes-Merton implied volatility of option prices, to machine precision.

    Follows the structure of Jaeckel's "Let's Be Rational" (2015): the price is reduced to an
    out-of-the-money normalised call, a rational-cubic initial guess is built in one of four
    branches, then at most three safeguarded third-order Householder steps on a branch-specific
    objective refine it. Returns NaN (never raises) where the price is outside the no-arbitrage
    bounds or an input is invalid; 0 where the price equals intrinsic value.
    """
    flat, shape, n = _flat(price, S, K, T, r, q, is_call)
    out = np.empty(n)
    _run(2, n, *flat, out)
    return _shaped(out, shape)
