# Found by Hydra's plugin discovery: `hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml)
# names this sweeper.  Hydra imports every plugin at every start: Optuna is imported only
# when a search runs.  (No dataclass here: with postponed annotations it breaks Hydra's scan.)
from typing import Any

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    """Bayesian search with pruning on Optuna's ask-and-tell API: see backprop.app.search."""

    def __init__(self, **settings: Any) -> None:
        from backprop.app.search import Search

        self.search = Search(settings)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.search.setup(hydra_context, task_function, config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
