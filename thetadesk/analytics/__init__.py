"""Performance analytics: metrics of equity curves and trades, P&L attribution, Monte Carlo
resampling and the backtest report. Pure functions over results; no Ray, no market access."""
