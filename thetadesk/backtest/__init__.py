"""The backtester: the same components the actors hold, driven by a simulated clock over
history (``engine``), the baselines read next to it (``baselines``) and ``results.json``
(``results``). ``scripts/backtest.py`` is its command line."""
