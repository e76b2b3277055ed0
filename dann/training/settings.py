"""The run's own settings: the top level (`RUN_SETTINGS`: seed, lambda), the labels of results, and the
`trainer` config as one object: every trainer key, declared and read one way (`TrainerSettings`).

Each field's type, range and description are declared here once (`dann.config.spec.Setting`): the config
checks and the configuration reference are derived from them. Light on purpose (no torch): the config
checks read it before torch is imported. Units: steps, except the batch sizes (examples per domain per
step; per evaluation batch).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal, get_args

from dann.config.spec import Setting, Spec, one_of
from dann.selection.pick import CRITERIA
from dann.training.progress import ProgressMode

# numpy (np.random.seed, scikit-learn's random_state) takes seeds in [0, 2**32).
SEED_MAX = 2**32 - 1

# The top level of the config: the run's seed, and the λ `dann.builders.build_method` hands an adaptive method.
# (A mapping, not a dataclass: no field can be named `lambda`.)
RUN_SETTINGS = {
    "seed": Annotated[
        int, Setting("training randomness: weight init and batch order; numpy seeds are < 2**32", ge=0, le=SEED_MAX)
    ],
    "lambda": Annotated[
        float, Setting("the final adaptation weight λ, where its schedule ends", ge=0, hint="e.g. lambda=0.1")
    ],
}
# A node's label, not a constructor argument: `build` leaves it out. `dataset.name` and `method.name` are
# what results are recorded and tabulated under.
LABELS = {"name": Annotated[str, Setting("what results are recorded and tabulated under", noun="a name")]}
Precision = Literal["auto", "bf16", "fp16", "fp32"]  # the computation of the step (dann.training.precision)
PRECISIONS = get_args(Precision)


@dataclass(frozen=True)
class TrainerSettings:
    """How long to train, how often to log, evaluate and checkpoint, where and how the step runs."""

    steps: Annotated[int, Setting("optimisation steps; p = step / steps drives the λ and lr schedules", ge=1)]
    batch_size: Annotated[
        int, Setting("examples per domain per step: each step sees batch_size source + batch_size target", ge=1)
    ]
    eval_batch_size: Annotated[int, Setting("examples per evaluation batch", ge=1)] = 256
    log_every: Annotated[
        int, Setting("steps between training-metric logs (device values are read only then)", ge=1)
    ] = 100
    eval_every: Annotated[int, Setting("steps between evaluations on source validation and target test", ge=1)] = 1000
    checkpoint_every: Annotated[
        int, Setting("steps between checkpoints/last.pt (one is also written at the end)", ge=1)
    ] = 1000
    progress: Annotated[
        ProgressMode,
        Setting("the console progress line: auto (bar on a terminal, else lines), bar, lines (SLURM logs), off"),
    ] = "auto"
    reverse_validation_every: Annotated[
        int, Setting("evaluations between reverse validations (the costly criterion); 0: never", ge=0)
    ] = 1
    resume: Annotated[bool, Setting("continue from checkpoints/last.pt when the output directory has one")] = True
    rerun_finished: Annotated[bool, Setting("run again even if the output directory's summary.json says finished")] = (
        False
    )
    objective: Annotated[
        str,
        Setting(
            "what the run returns to a sweeper: the metric of the evaluation this criterion picks",
            spec=one_of(*CRITERIA),
        ),
    ] = "source_val"
    device: Annotated[str, Setting("where the step runs: auto (cuda if available)", spec=Spec("device"))] = "auto"
    precision: Annotated[
        Precision, Setting("auto: bf16 on a CUDA GPU that supports it, else fp32; fp16 with a gradient scaler")
    ] = "auto"
    channels_last: Annotated[
        Literal["auto"] | bool, Setting("channels-last layout of convolutional nets and images; auto: on CUDA")
    ] = "auto"
    compile: Annotated[
        bool, Setting("torch.compile the loss computation: feature extractor, heads, losses (logged steps run eagerly)")
    ] = False
    threads: Annotated[
        Literal["auto"] | int,
        Setting("CPU threads of the run's torch ops; auto: OMP_NUM_THREADS, 1 for vectors, else every CPU", ge=1),
    ] = "auto"

    @classmethod
    def from_config(cls, node: Any) -> TrainerSettings:
        """From the composed `cfg.trainer` (a DictConfig or a dict), after the config checks."""
        return cls(**{field.name: node[field.name] for field in fields(cls) if field.name in node})
