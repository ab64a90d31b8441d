"""The position-management rules, one frozen value per concern, built from ``exits:`` config."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class RollRules:
    """When and how a tested credit spread is rolled (``max_debit`` in dollars per share)."""

    enabled: bool = False
    when_short_delta: float = 0.40  # a short leg's |delta| at which the spread counts as tested
    target_dte: int = 35  # the new expiry: nearest this many days out, later than the old one
    short_delta: float = 0.25  # the new short strike's |delta| (and away from the old one)
    max_debit: float = 0.20  # the most the roll may cost net, per share (0: credit only)
    max_rolls: int = 1  # rolls in one chain of positions


@dataclass(frozen=True, slots=True)
class RepairRules:
    """Size repair, each at most once per position (fractions of the quantity held)."""

    reduce_at_loss: float | None = None  # loss as a fraction of max loss at which to cut
    reduce_fraction: float = 0.5
    add_at_profit: float | None = None  # profit as a fraction of max profit at which to add
    add_fraction: float = 0.5


@dataclass(frozen=True, slots=True)
class ManageRules:
    """Exit rules. Fractions of max profit (``take_profit``, ``ladder``, ``trail``), a multiple
    of the premium (``stop_multiple``), calendar days (``close_dte``)."""

    take_profit: float = 0.5  # the last rung: whatever is left closes here
    stop_multiple: float | None = 2.0  # None: no per-trade stop (portfolio limits remain)
    close_dte: int = 7
    ladder: tuple[float, ...] = ()  # earlier rungs, each below take_profit, ascending
    trail: float | None = None  # after a rung: close the rest this far below the peak profit
    stop_on_breach: bool = False  # the underlying through a short strike stops the spread
    short_delta_stop: float | None = None  # a short leg's |delta| past this stops the spread
    hold_to_expiry: bool = False  # False: short legs are never held into the expiry close
    # A credit spread worth at most this (dollars per share at mid) to buy back is left to
    # expire: no time exit, take-profit rung or trail closes it (stops still do). None: off.
    min_close_value: float | None = None
    roll: RollRules = field(default_factory=RollRules)
    repair: RepairRules = field(default_factory=RepairRules)

    @property
    def rungs(self) -> tuple[float, ...]:
        """Every profit rung, the last being ``take_profit``."""
        return (*self.ladder, self.take_profit)

    @classmethod
    def from_config(cls, exits) -> ManageRules:
        """From the ``exits:`` config section (``thetadesk.config.ExitsConfig``)."""
        roll, repair = exits.roll, exits.repair
        return cls(
            take_profit=exits.take_profit, stop_multiple=exits.stop_multiple,
            close_dte=exits.close_dte, ladder=tuple(exits.ladder), trail=exits.trail,
            stop_on_breach=exits.stop_on_breach, short_delta_stop=exits.short_delta_stop,
            hold_to_expiry=exits.hold_to_expiry, min_close_value=exits.min_close_value,
            roll=RollRules(roll.enabled, roll.when_short_delta, roll.target_dte,
                           roll.short_delta, roll.max_debit, roll.max_rolls),
            repair=RepairRules(repair.reduce_at_loss, repair.reduce_fraction,
                               repair.add_at_profit, repair.add_fraction),
        )

    @classmethod
    def by_structure(cls, exits) -> tuple[tuple[str, ManageRules], ...]:
        """Each structure's exit set (``exits.structures``): the ``exits:`` section with the
        structure's own values in place of its keys (a take-profit level replaces the last
        rung; earlier rungs at or above it go), sorted by structure."""
        base = cls.from_config(exits)
        out = []
        for kind, own in sorted(exits.structures.items()):
            given = {k: getattr(own, k) for k in own.model_fields_set}
            if "ladder" in given:
                given["ladder"] = tuple(given["ladder"])
            rules = replace(base, **given)
            if "take_profit" in given and "ladder" not in given:
                rules = replace(rules, ladder=tuple(r for r in base.ladder
                                                    if r < rules.take_profit))
            out.append((kind, rules))
        return tuple(out)
