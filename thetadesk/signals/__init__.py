"""The decision layer's inputs: indicators, volatility context, regimes, entry timing and the
event calendar. Pure functions and small state machines over numpy arrays; no Ray, no pandas
(an actor process stays light), point in time throughout."""
