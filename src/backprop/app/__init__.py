"""The front doors (the ``backprop`` command, the Hydra app) and the commands behind them."""
