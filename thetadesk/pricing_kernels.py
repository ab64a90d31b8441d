"""The Black-Scholes-Merton kernels behind ``thetadesk.pricing``, as plain Python.

Every function here is written in the subset of Python that numba compiles (scalars, ``math``,
loops over 1-D arrays), with no decorator: ``thetadesk.pricing`` compiles them with numba the
first time a process needs them, or runs them as they are for a few elements in a process that
has not loaded numba (an account's paper broker quoting its own legs), which then stays about
45 MB smaller. Both ways give the same bits: the arithmetic is IEEE double either way and the
``math`` functions are the C library's in both (``tests/unit/test_pricing.py`` compares them
element by element). Where Python raises instead (``math.log`` of 0, a float divided by 0, an
overflowing ``math.exp``), ``thetadesk.pricing`` lets the compiled kernels answer.

Calls between kernels go through this module's globals; the compiled set gets a namespace of
its own in which each of these names is the compiled function (``pricing._compiled``).
"""

from __future__ import annotations

import math

import numpy as np

# The kernels ``thetadesk.pricing`` calls, and every function they call, in this module.
KERNELS = (
    "_ncdf", "_npdf", "_inv_ncdf", "_nblack", "_nblack_complement", "_nvega",
    "_rc_interpolate", "_rc_min_control", "_rc_control", "_lower_map", "_inverse_lower_map",
    "_upper_map", "_normalised_iv", "_element", "_valid", "_price_kernel", "_greeks_kernel",
    "_iv_kernel",
)

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT3 = math.sqrt(3.0)
_TWO_PI = 2.0 * math.pi
_TWO_PI_OVER_SQRT27 = 2.0 * math.pi / math.sqrt(27.0)
_SQRT_PI_OVER_2 = math.sqrt(math.pi / 2.0)
_EPS = float(np.finfo(np.float64).eps)
_TINY = float(np.finfo(np.float64).tiny)
_DBL_MAX = float(np.finfo(np.float64).max)
_MIN_TOTAL_VOL = 1e-100
# Rational cubic control parameter bounds (Delbourgo and Gregory's shape-preserving form).
_RC_MIN = -(1.0 - math.sqrt(_EPS))
_RC_MAX = 2.0 / (_EPS * _EPS)
_MODE_MIDDLE, _MODE_LOWER, _MODE_UPPER = 0, 1, 2
_IV_MAX_ITERATIONS = 3
_BOUND_ULPS = 4.0


# ---------------------------------------------------------------------------------------------
# Scalar building blocks


def _ncdf(z):
    return 0.5 * math.erfc(-z / _SQRT2)


def _npdf(z):
    return _INV_SQRT_2PI * math.exp(-0.5 * z * z)


def _inv_ncdf(p):
    # Acklam's rational approximation (relative error ~1e-9), then one Halley step on N(x) - p.
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        x = (
            ((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e00)
              * q - 2.549671010243001e00) * q + 4.374664141464968e00) * q + 2.938163982698783e00
        ) / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e00)
              * q + 3.754408661907416e00) * q + 1.0)
    elif p <= 1.0 - 0.02425:
        q = p - 0.5
        t = q * q
        x = (
            (((((-3.969683028665376e01 * t + 2.209460984245205e02) * t - 2.759285104469687e02)
               * t + 1.383577518672690e02) * t - 3.066479806614716e01) * t + 2.506628277459239e00)
            * q
        ) / (((((-5.447609879822406e01 * t + 1.615858368580409e02) * t - 1.556989798598866e02)
               * t + 6.680131188771972e01) * t - 1.328068155288572e01) * t + 1.0)
    else:
        q = math.sqrt(-2.0 * math.log1p(-p))
        x = -(
            ((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e00)
              * q - 2.549671010243001e00) * q + 4.374664141464968e00) * q + 2.938163982698783e00
        ) / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e00)
              * q + 3.754408661907416e00) * q + 1.0)
    e = _ncdf(x) - p
    u = e * _SQRT_2PI * math.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)


# Normalised Black: for x = ln(F/K) <= 0 and total volatility s = sigma*sqrt(T), the out-of-the-
# money call price divided by sqrt(F*K) times the discount factor:
#   b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2),   0 <= b < b_max = e^{x/2}.
# Its s-derivative ("normalised vega") is exp(-(x^2/s^2 + s^2/4)/2) / sqrt(2 pi).


def _nblack(x, s):
    if s <= 0.0:
        return 0.0
    h = x / s
    t = 0.5 * s
    return math.exp(0.5 * x) * _ncdf(h + t) - math.exp(-0.5 * x) * _ncdf(h - t)


def _nblack_complement(x, s):
    # b_max - b(x, s), summed from two positive terms so it keeps its precision near b_max.
    if s <= 0.0:
        return math.exp(0.5 * x)
    h = x / s
    t = 0.5 * s
    return math.exp(0.5 * x) * _ncdf(-(h + t)) + math.exp(-0.5 * x) * _ncdf(h - t)


def _nvega(x, s):
    if s <= 0.0:
        return _INV_SQRT_2PI if x == 0.0 else 0.0
    h = x / s
    return _INV_SQRT_2PI * math.exp(-0.5 * (h * h + 0.25 * s * s))


def _rc_interpolate(x, x_l, x_r, y_l, y_r, d_l, d_r, r):
    # Rational cubic through (x_l, y_l), (x_r, y_r) with end slopes d_l, d_r; r = 3 is the
    # cubic Hermite, larger r pulls towards the straight line.
    h = x_r - x_l
    if abs(h) <= 0.0:
        return 0.5 * (y_l + y_r)
    t = (x - x_l) / h
    if r >= _RC_MAX:
        return y_r * t + y_l * (1.0 - t)
    omt = 1.0 - t
    t2 = t * t
    omt2 = omt * omt
    num = (y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2
           + y_l * omt2 * omt)
    return num / (1.0 + (r - 3.0) * t * omt)


def _rc_min_control(d_l, d_r, slope, prefer_shape):
    # The smallest control parameter that keeps the interpolant monotone/convex like its data.
    monotonic = d_l * slope >= 0.0 and d_r * slope >= 0.0
    convex = d_l <= slope <= d_r
    concave = d_l >= slope >= d_r
    if not monotonic and not convex and not concave:
        return _RC_MIN
    r1 = -_DBL_MAX
    r2 = -_DBL_MAX
    if monotonic:
        if slope != 0.0:
            r1 = (d_r + d_l) / slope
        elif prefer_shape:
            r1 = _RC_MAX
    if convex or concave:
        s_m_dl = slope - d_l
        dr_m_s = d_r - slope
        if s_m_dl != 0.0 and dr_m_s != 0.0:
            r2 = max(abs((d_r - d_l) / dr_m_s), abs((d_r - d_l) / s_m_dl))
        elif prefer_shape:
            r2 = _RC_MAX
    elif monotonic and prefer_shape:
        r2 = _RC_MAX
    return max(_RC_MIN, max(r1, r2))


def _rc_control(x_l, x_r, y_l, y_r, d_l, d_r, d2, at_left, prefer_shape):
    # Control parameter matching the second derivative d2 at the left (or right) end, raised to
    # the minimum that keeps the interpolant's shape.
    h = x_r - x_l
    slope = (y_r - y_l) / h
    num = 0.5 * h * d2 + (d_r - d_l)
    den = slope - d_l if at_left else d_r - slope
    if num == 0.0:
        r = 0.0
    elif den == 0.0:
        r = _RC_MAX if num > 0.0 else _RC_MIN
    else:
        r = num / den
    return max(r, _rc_min_control(d_l, d_r, slope, prefer_shape))


# Lower map (small prices): f(s) = 2 pi |x| / sqrt(27) * N(z)^3 with z = -|x| / (sqrt(3) s)
# behaves like b(s) as s -> 0 and has a closed-form inverse. Derivatives are d/d(beta), beta = b(s).


def _lower_map(x, s):
    ax = abs(x)
    z = -ax / (_SQRT3 * s)
    y = z * z
    phi_z = _ncdf(z)
    f = _TWO_PI_OVER_SQRT27 * ax * phi_z * phi_z * phi_z
    fp = _TWO_PI * y * phi_z * phi_z * math.exp(y + 0.125 * s * s)
    dlog_fp_ds = -2.0 / s - 2.0 * z * _npdf(z) / (s * phi_z) - 2.0 * y / s + 0.25 * s
    fpp = fp * dlog_fp_ds * _SQRT_2PI * math.exp(1.5 * y + 0.125 * s * s)
    return f, fp, fpp


def _inverse_lower_map(x, f):
    if f <= 0.0:
        return 0.0
    z = _inv_ncdf((f / (_TWO_PI_OVER_SQRT27 * abs(x))) ** (1.0 / 3.0))
    if not z < 0.0:
        return -1.0
    return abs(x) / (_SQRT3 * -z)


# Upper map (prices near b_max): f(s) = N(-s/2), inverse s = -2 N^{-1}(f).


def _upper_map(x, s):
    f = _ncdf(-0.5 * s)
    w = (x / s) ** 2
    fp = -0.5 * math.exp(0.5 * w)
    fpp = _SQRT_PI_OVER_2 * math.exp(w + 0.125 * s * s) * w / s
    return f, fp, fpp


def _normalised_iv(beta, x):
    """Total volatility s with b(x, s) = beta, for x <= 0 and 0 < beta < e^{x/2}."""
    b_max = math.exp(0.5 * x)
    if x == 0.0:
        s_c, b_c, v_c = 0.0, 0.0, _INV_SQRT_2PI
    else:
        s_c = math.sqrt(2.0 * abs(x))
        b_c = _nblack(x, s_c)
        v_c = _nvega(x, s_c)
    s_left = 0.0
    s_right = math.inf
    mode = _MODE_MIDDLE
    if beta < b_c:
        s_l = s_c - b_c / v_c
        b_l = _nblack(x, s_l)
        if beta < b_l:
            f_l, fp_l, fpp_l = _lower_map(x, s_l)
            r = _rc_control(0.0, b_l, 0.0, f_l, 1.0, fp_l, fpp_l, False, True)
            f = _rc_interpolate(beta, 0.0, b_l, 0.0, f_l, 1.0, fp_l, r)
            if not f > 0.0:
                t = beta / b_l
                f = (f_l * t + b_l * (1.0 - t)) * t
            s = _inverse_lower_map(x, f)
            s_right = s_l
            mode = _MODE_LOWER
            if not 0.0 < s < s_l:
                s = 0.5 * s_l
        else:
            v_l = _nvega(x, s_l)
            r = _rc_control(b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, 0.0, False, False)
            s = _rc_interpolate(beta, b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, r)
            s_left = s_l
            s_right = s_c
    else:
        s_h = s_c + (b_max - b_c) / v_c
        b_h = _nblack(x, s_h)
        if beta <= b_h:
            v_h = _nvega(x, s_h)
            r = _rc_control(b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, 0.0, True, False)
            s = _rc_interpolate(beta, b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, r)
            s_left = s_c
            s_right = s_h
        else:
            f_h, fp_h, fpp_h = _upper_map(x, s_h)
            f = -1.0
            if abs(fpp_h) < 1e150:
                r = _rc_control(b_h, b_max, f_h, 0.0, fp_h, -0.5, fpp_h, True, True)
                f = _rc_interpolate(beta, b_h, b_max, f_h, 0.0, fp_h, -0.5, r)
            if not f > 0.0:
                h = b_max - b_h
                t = (beta - b_h) / h
                f = (f_h * (1.0 - t) + 0.5 * h * t) * (1.0 - t)
            s = -2.0 * _inv_ncdf(f)
            s_left = s_h
            if not s > s_h:
                s = 2.0 * s_h
            if beta > 0.5 * b_max:
                mode = _MODE_UPPER

    # Householder (third order) iterations on an objective chosen per branch so that it is
    # close to linear in s there: b - beta (middle), 1/ln b - 1/ln beta (small prices),
    # ln((b_max - beta) / (b_max - b)) (prices near b_max). Bracketed by [s_left, s_right].
    log_beta = math.log(beta)
    ds = math.inf
    ds_prev = 0.0
    reversals = 0
    it = 0
    while it < _IV_MAX_ITERATIONS and abs(ds) > _EPS * s:
        if ds * ds_prev < 0.0:
            reversals += 1
        if it > 0 and (reversals == 3 or not (s_left < s < s_right)):
            s = 0.5 * (s_left + s_right) if s_right < math.inf else 2.0 * s_left
            if s_right - s_left <= _EPS * s:
                break
            reversals = 0
            ds = 0.0
        ds_prev = ds
        b = _nblack(x, s)
        bp = _nvega(x, s)
        if b > beta and s < s_right:
            s_right = s
        elif b < beta and s > s_left:
            s_left = s
        if b <= 0.0 or bp <= 0.0:
            ds = 0.5 * (s_left + s_right) - s if s_right < math.inf else s
        else:
            hs = x / (s * s)
            halley_b = (x / s) * hs - 0.25 * s  # b''/b'
            hh3_b = halley_b * halley_b - 3.0 * hs * hs - 0.25  # b'''/b'
            if mode == _MODE_LOWER:
                # G = 1/ln(b): G''/G' = -(2 + ln b) / (b ln b) and G'''/G' = (6 + 6 ln b +
                # 2 ln^2 b) / (b ln b)^2, written with b'/b because b^2 underflows below 1e-154.
                lb = math.log(b)
                bp_b = bp / b
                g2bp = -(2.0 + lb) / lb * bp_b
                nu = (1.0 / log_beta - 1.0 / lb) * (-lb * lb / bp_b)
                halley = g2bp + halley_b
                hh3 = ((6.0 + lb * (6.0 + 2.0 * lb)) / (lb * lb) * bp_b * bp_b
                       + 3.0 * g2bp * halley_b + hh3_b)
            elif mode == _MODE_UPPER:
                u = _nblack_complement(x, s)
                ub = b_max - beta
                g2 = 1.0 / u  # G''/G' for G = -ln(b_max - b)
                nu = math.log(u / ub) * u / bp
                halley = g2 * bp + halley_b
                hh3 = 2.0 * g2 * g2 * bp * bp + 3.0 * g2 * bp * halley_b + hh3_b
            else:
                nu = (beta - b) / bp
                halley = halley_b
                hh3 = hh3_b
            ds = nu * (1.0 + 0.5 * halley * nu) / (1.0 + nu * (halley + hh3 * nu / 6.0))
            ds = max(-0.5 * s, ds)
        s += ds
        it += 1
    return s


# ---------------------------------------------------------------------------------------------
# Vector kernels. Every input is a contiguous 1-D array of length n or 1 (a broadcast scalar).


def _element(i, A, B, C, D, E, F, calls):
    # Element i of six float inputs and the call flag, each of length n or 1 (broadcast).
    return (
        A[i if A.size > 1 else 0], B[i if B.size > 1 else 0], C[i if C.size > 1 else 0],
        D[i if D.size > 1 else 0], E[i if E.size > 1 else 0], F[i if F.size > 1 else 0],
        1.0 if calls[i if calls.size > 1 else 0] else -1.0,
    )


def _valid(s, k, t, r, v, q):
    return (
        math.isfinite(s) and s > 0.0 and math.isfinite(k) and k > 0.0
        and math.isfinite(t) and t >= 0.0 and math.isfinite(v) and v >= 0.0
        and math.isfinite(r) and math.isfinite(q)
    )


def _price_kernel(S, K, T, R, V, Q, C, out):
    for i in range(out.size):
        s, k, t, r, v, q, th = _element(i, S, K, T, R, V, Q, C)
        if not _valid(s, k, t, r, v, q):
            out[i] = math.nan
            continue
        dq = math.exp(-q * t)
        dr = math.exp(-r * t)
        sd = s * dq
        kd = k * dr
        vol = v * math.sqrt(t)
        if vol < _MIN_TOTAL_VOL:
            out[i] = max(th * (sd - kd), 0.0)
            continue
        d1 = (math.log(s / k) + (r - q) * t) / vol + 0.5 * vol
        out[i] = th * (sd * _ncdf(th * d1) - kd * _ncdf(th * (d1 - vol)))


def _greeks_kernel(S, K, T, R, V, Q, C, price, delta, gamma, vega, theta, rho):
    for i in range(price.size):
        s, k, t, r, v, q, th = _element(i, S, K, T, R, V, Q, C)
        if not _valid(s, k, t, r, v, q):
            price[i] = delta[i] = gamma[i] = vega[i] = theta[i] = rho[i] = math.nan
            continue
        dq = math.exp(-q * t)
        dr = math.exp(-r * t)
        sd = s * dq
        kd = k * dr
        sqt = math.sqrt(t)
        vol = v * sqt
        if vol < _MIN_TOTAL_VOL:
            # Deterministic payoff: weight 1 in the money, 0 out, 1/2 exactly at the money.
            fwd = sd - kd
            w = 1.0 if th * fwd > 0.0 else (0.5 if fwd == 0.0 else 0.0)
            price[i] = max(th * fwd, 0.0)
            delta[i] = w * th * dq
            gamma[i] = 0.0
            vega[i] = sd * sqt * _INV_SQRT_2PI if fwd == 0.0 else 0.0
            theta[i] = w * th * (q * sd - r * kd)
            rho[i] = w * th * kd * t
            continue
        d1 = (math.log(s / k) + (r - q) * t) / vol + 0.5 * vol
        d2 = d1 - vol
        n1 = _ncdf(th * d1)
        n2 = _ncdf(th * d2)
        pdf = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
        price[i] = th * (sd * n1 - kd * n2)
        delta[i] = th * dq * n1
        gamma[i] = dq * pdf / (s * vol)
        vega[i] = sd * pdf * sqt
        theta[i] = -0.5 * sd * pdf * v / sqt + th * (q * sd * n1 - r * kd * n2)
        rho[i] = th * kd * t * n2


def _iv_kernel(P, S, K, T, R, Q, C, out):
    for i in range(out.size):
        p, s, k, t, r, q, th = _element(i, P, S, K, T, R, Q, C)
        out[i] = math.nan
        if not (_valid(s, k, t, r, 0.0, q) and t > 0.0 and math.isfinite(p)):
            continue
        # The no-arbitrage bounds exactly as documented, in price space.
        sd = s * math.exp(-q * t)
        kd = k * math.exp(-r * t)
        intrinsic = max(th * (sd - kd), 0.0)
        upper = sd if th > 0.0 else kd
        tol = _BOUND_ULPS * _EPS * max(sd, kd)  # the rounding of the bounds themselves
        tol_intrinsic = tol if intrinsic > 0.0 else 0.0  # 0 is exact out of the money
        if p < intrinsic - tol_intrinsic or p >= upper - tol:
            continue
        time_value = p - intrinsic  # in the money: the out-of-the-money twin's price (parity)
        if time_value <= tol_intrinsic:
            out[i] = 0.0
            continue
        # Normalise by the discounted geometric mean of forward and strike. As an out-of-the-
        # money call, x = ln(F/K) <= 0 and the normalised price lies in (0, e^{x/2}).
        x = -abs(math.log(s / k) + (r - q) * t)
        beta = time_value / (math.sqrt(s) * math.sqrt(k) * math.exp(-0.5 * (r + q) * t))
        b_max = math.exp(0.5 * x)
        if not beta < b_max:  # below the bound in price space, at it after rounding
            continue
        out[i] = _normalised_iv(beta, x) / math.sqrt(t)
