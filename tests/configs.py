"""Config data for tests: the shipped config turned to the adaptive strategy, and the exits
that shipped before issue 24 for scenarios written around them."""

# The exits shipped before the research protocol chose holding to expiry: rungs at 25% and
# 50% of max profit, the rest at 75%, a stop at 2x the credit, a time exit at 7 DTE.
LADDERED_EXITS = {"ladder": [0.25, 0.5], "take_profit": 0.75, "stop_multiple": 2.0,
                  "hold_to_expiry": False, "min_close_value": None}


def adaptive(data: dict) -> dict:
    """``data`` (the config's parsed YAML, changed in place and returned) with
    ``strategy.kind: adaptive`` and the plain strategy's own keys off, as the config requires
    (the adaptive strategy takes its width and working entries from ``decision``)."""
    strategy = data["strategy"]
    strategy["kind"] = "adaptive"
    strategy["width_pct"] = strategy["width_sd"] = strategy["trend_sma"] = None
    strategy["ladder"]["enabled"] = False
    strategy["vrp"]["min_ratio"] = strategy["vrp"]["min_difference"] = None
    return data
