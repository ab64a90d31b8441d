"""Specifications of the paper broker's calibrated mid-fill curve and its market impact.

The calibration (see ``FillModel``): a working order stepped by ``LimitLadder`` from the mid
toward the natural, one cent every 5 minutes and polled every 5 minutes, on a 6.5-cent
half-spread, fills on average at 0.577 of the half-spread from the mid (Muravyev and Pearson
2020: 0.75 x 10 / 13). Quotes are set by hand and do not move, so only the model fills inside
the spread. Prices are net per share, > 0 a credit.
"""

import itertools
from datetime import timedelta

import pytest

from tests.unit.adapters.test_sim_broker import FakeMarket, ny
from tests.unit.adapters.test_sim_broker_lifecycle import LEGS, P440, P450
from thetadesk.adapters.sim_broker import (
    CALIBRATED_CONCESSION,
    CALIBRATED_MID_FILL_EXPONENT,
    FillModel,
    SimBroker,
    _minutes,
)
from thetadesk.errors import DataError
from thetadesk.models import OrderRequest, OrderStatus, Quote
from thetadesk.signals.timing import LimitLadder

ACCOUNT = "paper-1"
MONDAY = ny(2025, 3, 3, 10, 0)
# Half-spread 6.5 cents: the simulator's median for the default SPY bull put spread.
LADDER_QUOTES = {P450: Quote(3.00, 3.07, 400, 400), P440: Quote(1.50, 1.56, 400, 400)}
LADDER_MID, LADDER_NATURAL = 3.035 - 1.53, 3.00 - 1.56
CALIBRATED = FillModel(mid_fill_probability=True, mid_fill_exponent=CALIBRATED_MID_FILL_EXPONENT,
                       mid_fill_per_minute=True, seed=24)


def broker_on(path, model, market=None, cash=10_000_000.0):
    return SimBroker(ACCOUNT, market or FakeMarket(LADDER_QUOTES), path, cash, 0.0,
                     fill_model=model, durable=False)


def limit_order(coid, limit, quantity=1, order_type="limit"):
    return OrderRequest(coid, ACCOUNT, LEGS, quantity, limit, True, order_type=order_type)


def run_ladders(folder, model, n, *, batch=100):
    """``n`` working entries, ``batch`` at a time on one broker each (a broker's cost per call
    grows with the orders it holds). Returns each ladder's fill price (None: not filled)."""
    filled: dict[int, float | None] = {}
    for first in range(0, n, batch):
        filled.update(_ladders(folder / f"ladders-{first}.db", model,
                               range(first, min(n, first + batch))))
    return filled


def _ladders(path, model, ids, *, step_minutes=5, poll_minutes=5):
    """Working entries at once, as the account drives them: submit at the ladder's price, poll
    every ``poll_minutes``; at each step cancel what did not fill and send the next step."""
    broker = broker_on(path, model)
    ladder = LimitLadder(step_minutes=step_minutes, tick=0.01, max_steps=20)
    working = {i: f"lad-{i}" for i in ids}
    filled: dict[int, float | None] = dict.fromkeys(ids)
    for coid in working.values():
        broker.submit(limit_order(coid, ladder.net(LADDER_MID, LADDER_NATURAL, 0)), MONDAY)
    step, minute = 0, 0
    while working and step <= ladder.max_steps:
        minute += poll_minutes
        now = MONDAY + timedelta(minutes=minute)
        broker.poll(now)
        for i, coid in list(working.items()):
            order = broker.get_order_by_client_id(coid)
            if order.status is OrderStatus.FILLED:
                filled[i] = order.avg_fill_price
                del working[i]
        if minute % step_minutes == 0:
            step += 1
            for i, coid in list(working.items()):
                broker.cancel(coid, now)
                working[i] = f"lad-{i}.{step}"
                placed = broker.submit(
                    limit_order(working[i], ladder.net(LADDER_MID, LADDER_NATURAL, step)), now)
                if placed.status is OrderStatus.FILLED:
                    filled[i] = placed.avg_fill_price
                    del working[i]
    broker.close()
    return filled


def concession(price):
    """The share of the half-spread given up from the mid."""
    return (LADDER_MID - price) / (LADDER_MID - LADDER_NATURAL)


# -- the curve ---------------------------------------------------------------------------------


def test_mid_fill_chance_is_0_at_the_mid_1_at_the_natural_and_rises_between():
    model = FillModel(mid_fill_probability=True, mid_fill_exponent=3.6)
    xs = [i / 20 for i in range(21)]
    chances = [model.mid_fill_chance(x) for x in xs]

    assert chances[0] == 0.0
    assert chances[-1] == 1.0
    assert all(a < b for a, b in itertools.pairwise(chances))
    assert model.mid_fill_chance(0.5) == pytest.approx(0.5 ** 3.6)
    assert model.mid_fill_chance(-0.2) == 0.0  # better than the mid
    assert FillModel().mid_fill_chance(0.3) == 0.3  # the original straight line


def test_calibrated_ladder_fills_at_the_documented_share_of_the_half_spread(tmp_path):
    # 600 ladders: the concession of one fill has a standard deviation of about 0.17, so the
    # mean's is about 0.007 and 0.03 is over four of them (seeded: the same draws every run).
    filled = run_ladders(tmp_path, CALIBRATED, 600)
    shares = [concession(p) for p in filled.values() if p is not None]

    assert len(shares) == 600  # a ladder that runs to the natural always fills
    assert CALIBRATED_CONCESSION == pytest.approx(0.577, abs=5e-4)
    assert sum(shares) / len(shares) == pytest.approx(CALIBRATED_CONCESSION, abs=0.03)
    assert min(shares) > 0  # never at or above the mid


def test_original_straight_line_concedes_far_less_than_the_documented_costs(tmp_path):
    # Why the calibration: the linear chance fills a ladder a cent or two from the mid.
    linear = FillModel(mid_fill_probability=True, mid_fill_per_minute=True, seed=24)
    filled = run_ladders(tmp_path, linear, 300)
    shares = [concession(p) for p in filled.values() if p is not None]

    assert sum(shares) / len(shares) < 0.3


def _filled_within(path, model, poll_minutes, n=400, minutes=30, limit=1.47):
    broker = broker_on(path, model)
    for i in range(n):
        broker.submit(limit_order(f"rest-{i}", limit), MONDAY)
    for minute in range(poll_minutes, minutes + 1, poll_minutes):
        broker.poll(MONDAY + timedelta(minutes=minute))
    done = sum(broker.get_order_by_client_id(f"rest-{i}").status is OrderStatus.FILLED
               for i in range(n))
    broker.close()
    return done / n


def test_per_minute_chance_does_not_depend_on_how_often_the_broker_is_polled(tmp_path):
    # limit 1.47 concedes 0.035 / 0.065 of the half-spread: x^3.6 = 0.108 a minute, so
    # 1 - 0.892^31 = 0.97 fill within 30 minutes (the submission's minute and 30 more).
    every_minute = _filled_within(tmp_path / "m1.db", CALIBRATED, 1)
    every_five = _filled_within(tmp_path / "m5.db", CALIBRATED, 5)
    every_ten = _filled_within(tmp_path / "m10.db", CALIBRATED, 10)
    expected = 1 - (1 - (0.035 / 0.065) ** 3.6) ** 31

    for share in (every_minute, every_five, every_ten):
        assert share == pytest.approx(expected, abs=0.04)


def test_per_draw_chance_does_depend_on_the_polls(tmp_path):
    # The original semantics, kept as the default: one chance per poll.
    per_draw = FillModel(mid_fill_probability=True, mid_fill_exponent=3.6, seed=24)
    rare = _filled_within(tmp_path / "d10.db", per_draw, 10)
    often = _filled_within(tmp_path / "d1.db", per_draw, 1)

    assert often > rare + 0.3


def test_per_minute_limit_at_the_mid_never_fills(tmp_path):
    assert _filled_within(tmp_path / "mid.db", CALIBRATED, 5, n=50, minutes=120,
                          limit=1.51) == 0.0


def test_minutes_since_the_last_try_count_session_minutes_only():
    opened = ny(2025, 3, 4, 9, 30)
    yesterday = {"submitted_at": ny(2025, 3, 3, 15, 55).isoformat()}
    today = {"submitted_at": ny(2025, 3, 4, 10, 0).isoformat()}

    # Resting overnight: from today's open, its minute included.
    assert _minutes(yesterday, ny(2025, 3, 4, 9, 31), ny(2025, 3, 3, 16, 0), opened) == 2
    # Since the previous poll, or the submission when it came after that poll.
    assert _minutes(today, ny(2025, 3, 4, 10, 20), ny(2025, 3, 4, 10, 15), opened) == 5
    assert _minutes(today, ny(2025, 3, 4, 10, 20), ny(2025, 3, 4, 9, 45), opened) == 20
    # Tried already this minute: no new chance.
    assert _minutes(today, ny(2025, 3, 4, 10, 0, 30), None, opened) == 0


def test_fill_model_calibration_bad_values_raise_data_error():
    for kwargs in ({"mid_fill_exponent": 0}, {"mid_fill_exponent": 11},
                   {"mid_fill_per_minute": 1}, {"impact_half_spreads": -1},
                   {"impact_half_spreads": 10.5}, {"impact_half_spreads": True}):
        with pytest.raises(DataError):
            FillModel(**kwargs)


# -- market impact -----------------------------------------------------------------------------

IMPACT = FillModel(impact_half_spreads=1.0)


def deep(size=400):
    """The hand spread (natural 1.40, mid 1.50: a 0.10 half-spread) with ``size`` shown."""
    return FakeMarket({P450: Quote(3.00, 3.10, size, size), P440: Quote(1.50, 1.60, size, size)})


def market_fill(tmp_path, quantity, model=IMPACT, market=None):
    broker = broker_on(tmp_path / f"m{quantity}.db", model, market or deep())
    placed = broker.submit(limit_order("mkt", 0.0, quantity, order_type="market"), MONDAY)
    broker.close()
    return placed


def test_impact_small_order_pays_nothing_extra(tmp_path):
    # 1 of 400 shown: 0.10 x sqrt(1/400) = 0.005, under a cent
    assert market_fill(tmp_path, 1).avg_fill_price == 1.40


def test_impact_large_order_pays_the_square_root_of_its_share_of_the_display(tmp_path):
    # 100 of 400 shown: 0.10 x sqrt(1/4) = 0.05 more; all 400: a whole half-spread more
    assert market_fill(tmp_path, 100).avg_fill_price == pytest.approx(1.35)
    assert market_fill(tmp_path, 400).avg_fill_price == pytest.approx(1.30)


def test_impact_grows_with_size_and_never_shrinks(tmp_path):
    prices = [market_fill(tmp_path, q).avg_fill_price for q in (1, 4, 16, 36, 64, 100, 225, 400)]

    assert all(a >= b for a, b in itertools.pairwise(prices))
    assert prices[0] - prices[-1] == pytest.approx(0.10)


def test_impact_off_by_default(tmp_path):
    assert market_fill(tmp_path, 400, model=FillModel()).avg_fill_price == 1.40


def test_impact_limit_order_never_fills_through_its_limit(tmp_path):
    broker = broker_on(tmp_path / "limit.db", IMPACT, deep())

    small = broker.submit(limit_order("small", 1.40, 1), MONDAY)
    large = broker.submit(limit_order("large", 1.40, 100), MONDAY)
    inside = broker.submit(limit_order("inside", 1.35, 100), MONDAY)

    assert (small.status, small.avg_fill_price) == (OrderStatus.FILLED, 1.40)
    assert large.status is OrderStatus.NEW  # natural less impact is 1.35 < 1.40: it waits
    assert (inside.status, inside.avg_fill_price) == (OrderStatus.FILLED, 1.35)
    assert broker.fills("large") == []


def test_impact_moves_the_mid_of_mid_mode_fills(tmp_path):
    model = FillModel(mode="mid", impact_half_spreads=1.0)
    broker = broker_on(tmp_path / "mid.db", model, deep())

    small = broker.submit(limit_order("small", 1.30, 1), MONDAY)
    large = broker.submit(limit_order("large", 1.30, 100), MONDAY)

    assert small.avg_fill_price == pytest.approx(1.50)  # the mid
    assert large.avg_fill_price == pytest.approx(1.45)  # the mid less 0.05 of impact


def test_impact_lowers_the_mid_fill_chance_of_a_large_order(tmp_path):
    # Limit 1.45 is halfway to the natural for one contract (x = 0.5); for 100 of 400 shown the
    # mid and the natural both move 0.05 down, so the limit sits at the mid: no chance at all.
    model = FillModel(mid_fill_probability=True, impact_half_spreads=1.0, seed=3)
    broker = broker_on(tmp_path / "lucky.db", model, deep())
    for i in range(40):
        broker.submit(limit_order(f"one-{i}", 1.45, 1), MONDAY)
        broker.submit(limit_order(f"big-{i}", 1.45, 100), MONDAY)

    def filled(prefix):
        return sum(broker.get_order_by_client_id(f"{prefix}-{i}").status is OrderStatus.FILLED
                   for i in range(40))

    assert 8 <= filled("one") <= 32
    assert filled("big") == 0


def test_impact_display_share_limits_each_execution_and_its_impact(tmp_path):
    # A quarter of the display per poll: 100 of 400 each, 0.05 each, never the 0.10 of 400.
    model = FillModel(impact_half_spreads=1.0, max_display_share=0.25)
    broker = broker_on(tmp_path / "share.db", model, deep())
    broker.submit(limit_order("big", 1.35, 400), MONDAY)
    for minute in (1, 2, 3):
        broker.poll(MONDAY + timedelta(minutes=minute))

    assert [(f.quantity, f.price) for f in broker.fills("big")] == [(100, 1.35)] * 4


def test_impact_leg_showing_nothing_sets_no_scale(tmp_path):
    # The long leg shows no size: the short leg's 400 is the scale.
    market = FakeMarket({P450: Quote(3.00, 3.10, 400, 400), P440: Quote(1.50, 1.60, 100, 0)})
    assert market_fill(tmp_path, 100, market=market).avg_fill_price == pytest.approx(1.35)
    empty = FakeMarket({P450: Quote(3.00, 3.10, 0, 0), P440: Quote(1.50, 1.60, 0, 0)})
    assert market_fill(tmp_path, 50, market=empty).avg_fill_price == 1.40  # no scale at all


def test_fill_model_impact_unit_rounds_down_to_the_tick():
    assert IMPACT.impact(0.10, 400, 1) == 0.0
    assert IMPACT.impact(0.10, 400, 100) == pytest.approx(0.05)
    assert FillModel(impact_half_spreads=2.0).impact(0.10, 400, 100) == pytest.approx(0.10)
    assert IMPACT.impact(0.10, 0, 100) == 0.0
    assert FillModel().impact(0.10, 400, 400) == 0.0

