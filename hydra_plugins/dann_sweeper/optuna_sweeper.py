"""dann's Optuna sweeper: Hydra's, which ends in one line and a sweep_summary.json when no trial succeeded.

A Hydra plugin, since Hydra instantiates a sweeper only from the `hydra_plugins` namespace; the
hparams_search configs name it (`hydra.sweeper._target_`). The logic is `dann.runs.sweep.optuna_sweep`.
Hydra imports this module at every start: without the Optuna sweeper (dann's `sweeps` extra) it defines
nothing, rather than warn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:
    pass
else:

    class DannOptunaSweeper(OptunaSweeper):
        def sweep(self, arguments: list[str]) -> Any:
            from dann.runs.sweep import optuna_sweep

            return optuna_sweep(super().sweep, arguments, Path(self.sweeper.config.hydra.sweep.dir))
