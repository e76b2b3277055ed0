"""The type and range of every config key, in one table (`SCHEMA`) that `dann.config.validate.validate` checks.

Each dotted key maps to a `Spec`; a wrong value gets one message of one shape:

    optim.optimizer.momentum: expected a number in [0, 1), got -1

Numbers must be finite everywhere (nan and inf are refused), booleans must be real
booleans (`maybe` or 1 is not true), integers real integers (1e3 is a float). A key
that is neither in `SCHEMA` nor matched by a pattern in `OPEN_KEYS` is refused as
unknown (a typo, e.g. `+trainer.stpes=5`). `hydra.*` is Hydra's own business.

To add a config key: give it a spec here (tests/config/test_config.py fails until every key
in conf/ has one) and state its allowed values in its comment in conf/.
"""

from __future__ import annotations

from dann.config.spec import Spec, boolean, integer, number, one_of, text
from dann.data.images import ON_CORRUPT
from dann.methods.finetune import FREEZE_IN_STAGE2
from dann.models.feature_extractors import ARCH_EXAMPLES, ARCHS
from dann.runs.tracking import WANDB_MODES
from dann.selection.pick import CRITERIA
from dann.training.precision import PRECISIONS
from dann.training.progress import PROGRESS_MODES


class TorchvisionArch(Spec):
    """One of the many torchvision model names: a wrong one is told a few examples, not all 80."""

    def describe(self, finite: bool = True) -> str:
        return (
            f"the name of a torchvision classification model (e.g. {ARCH_EXAMPLES}; "
            f"torchvision.models.list_models() gives all {len(self.choices)})"
        )


class AutoOr(Spec):
    """`auto`, or a value of this spec (an integer for `trainer.threads`)."""

    def expected(self, value: object) -> str | None:
        return None if value == "auto" and isinstance(value, str) else super().expected(value)

    def describe(self, finite: bool = True) -> str:
        return "auto or " + super().describe(finite)


TARGET = Spec("target")
PARTIAL = one_of(True, means="the code supplies the other arguments")
ANY = Spec("any")
POSITIVE = integer(1)
HIDDEN = integer(1, list=True, means="widths of the hidden layers; [] for none")
DROPOUT = number(0, 1, open_hi=True, means="the probability of zeroing a unit")

# numpy (np.random.seed, scikit-learn's random_state) takes seeds in [0, 2**32).
SEED_MAX = 2**32 - 1

SCHEMA: dict[str, Spec] = {
    "seed": integer(0, SEED_MAX, means="numpy seeds must be < 2**32"),
    "lambda": number(0, means="the final adaptation weight", hint="e.g. lambda=0.1"),
    # --- dataset: every dataset
    "dataset._target_": TARGET,
    "dataset.name": text(),
    "dataset.source": text(noun="a domain name"),
    "dataset.target": text(noun="a domain name"),
    "dataset.root": text(noun="a directory"),
    "dataset.protocol": one_of("inductive", "transductive", "heldout"),
    "dataset.heldout_fraction": number(0, 1, open_lo=True, open_hi=True, noun="a fraction"),
    "dataset.target_labeled_fraction": number(0, 1, open_lo=True, noun="a fraction"),
    # moons
    "dataset.num_train": POSITIVE,
    "dataset.num_test": POSITIVE,
    "dataset.noise": number(0, means="std of the Gaussian noise"),
    "dataset.rotation_deg": number(means="degrees"),
    # the moons' generator seeds are data_seed·4 + 0…3, and must stay below 2**32
    "dataset.data_seed": integer(0, (SEED_MAX - 3) // 4),
    # digits and image datasets
    "dataset.image_size": integer(1, means="square side in pixels"),
    "dataset.channels": one_of(1, 3, means="1: grey, 3: RGB"),
    "dataset.download": boolean(),
    "dataset.mean": number(list=True, means="one per channel"),
    "dataset.std": number(0, open_lo=True, list=True, means="one per channel"),
    # image datasets (office31, office_home, visda2017, domainnet, folder)
    "dataset.on_corrupt": one_of(*ON_CORRUPT, means="what an unreadable image does"),
    "dataset.num_workers": integer(0, means="DataLoader worker processes"),
    "dataset.resize_size": integer(1, means="pixels"),
    "dataset.transforms.train": Spec("transforms"),
    "dataset.transforms.eval": Spec("transforms"),
    "dataset.source_dir": text(null=True, noun="a directory"),
    "dataset.target_dir": text(null=True, noun="a directory"),
    # --- model
    "model.feature_extractor._target_": TARGET,
    "model.feature_extractor.hidden": HIDDEN,
    "model.feature_extractor.activation._target_": TARGET,
    "model.feature_extractor.activation._partial_": PARTIAL,
    "model.feature_extractor.arch": TorchvisionArch("choice", choices=ARCHS),
    "model.feature_extractor.weights": text(
        null=True, noun="a torchvision weights name or a .pth path", hint="null trains from scratch"
    ),
    "model.bottleneck_dim": integer(1, null=True, means="width of the bottleneck layer; null for none"),
    "model.backbone_lr_mult": number(
        0, means="the backbone's learning rate as a fraction of optim.optimizer.lr", hint="e.g. 0.1"
    ),
    "model.freeze_backbone": boolean(),
    # At most the backbone's stage count, which depends on the arch: the network checks that.
    "model.unfreeze_last": integer(0, means="backbone stages left trainable, counted from the last"),
    **{
        f"model.{head}.{key}": spec
        for head in ("label_predictor", "domain_classifier")
        for key, spec in (("_target_", TARGET), ("hidden", HIDDEN), ("dropout", DROPOUT), ("batch_norm", boolean()))
    },
    # --- method
    "method._target_": TARGET,
    "method.name": text(noun="a name", means="what results are recorded under"),
    "method.lambda_schedule._target_": TARGET,
    "method.lambda_schedule._partial_": PARTIAL,
    "method.lambda_schedule.gamma": number(0, open_lo=True, means="γ of the ganin schedule", hint="e.g. 10"),
    "method.stage1_fraction": number(
        0, 1, noun="a fraction", means="of trainer.steps, the source stage", hint="e.g. 0.5"
    ),
    "method.freeze_in_stage2": one_of(*FREEZE_IN_STAGE2),
    # CDAN (method=cdan, cdan_e) and MDD (method=mdd)
    "method.entropy_conditioning": boolean(),
    "method.randomized": boolean(null=True, means="null: randomized when d_f·C > randomized_threshold"),
    "method.randomized_dim": integer(1, means="width of the randomized multilinear map", hint="e.g. 1024"),
    "method.randomized_threshold": integer(1, means="d_f·C above which the map is randomized", hint="e.g. 4096"),
    "method.margin": number(0, open_lo=True, means="MDD's margin factor γ", hint="e.g. 4"),
    # --- optim
    "optim.optimizer._target_": TARGET,
    "optim.optimizer._partial_": one_of(True, means="the run supplies the parameter groups"),
    "optim.optimizer.lr": number(0, open_lo=True, noun="a learning rate"),
    "optim.optimizer.momentum": number(0, 1, open_hi=True),
    "optim.optimizer.weight_decay": number(0),
    "optim.optimizer.nesterov": boolean(),
    "optim.lr_schedule._target_": TARGET,
    "optim.lr_schedule._partial_": PARTIAL,
    "optim.lr_schedule.alpha": number(0, means="α of the annealed schedule"),
    "optim.lr_schedule.beta": number(0, means="β of the annealed schedule"),
    "optim.lr_schedule.gamma": number(0, means="gamma of the inv schedule"),
    "optim.lr_schedule.power": number(0, means="power of the inv schedule"),
    # --- trainer
    "trainer.steps": POSITIVE,
    "trainer.batch_size": POSITIVE,
    "trainer.eval_batch_size": POSITIVE,
    "trainer.eval_every": POSITIVE,
    "trainer.log_every": POSITIVE,
    "trainer.checkpoint_every": POSITIVE,
    "trainer.progress": one_of(*PROGRESS_MODES),
    "trainer.reverse_validation_every": integer(0, means="evaluations between reverse validations; 0: never"),
    "trainer.resume": boolean(),
    "trainer.rerun_finished": boolean(),
    "trainer.objective": one_of(*CRITERIA),
    "trainer.device": Spec("device"),
    "trainer.precision": one_of(*PRECISIONS),
    "trainer.channels_last": one_of("auto", True, False),
    "trainer.compile": boolean(),
    "trainer.threads": AutoOr("int", 1, means="CPU threads"),
    # --- logger
    "logger.wandb.mode": one_of(*WANDB_MODES),
    "logger.wandb.project": text(),
    "logger.wandb.entity": text(null=True),
    "logger.wandb.group": text(null=True),
    "logger.wandb.name": text(null=True),
    "logger.wandb.tags": text(list=True, noun="a string"),
}

# Settings of a `_target_` that the table does not list (an Adam's betas, a custom backbone's
# depth, a schedule or method of your own): any value with finite numbers; `dann.config.validate` checks
# the name against the target's signature.
OPEN_KEYS: dict[str, Spec] = {
    "dataset.": ANY,  # a dataset class of your own (a DomainPair subclass) and its settings
    "model.feature_extractor.": ANY,
    "model.label_predictor.": ANY,
    "model.domain_classifier.": ANY,
    "optim.optimizer.": ANY,
    "optim.lr_schedule.": ANY,
    "method.": ANY,
    "method.lambda_schedule.": ANY,
}


def spec_of(key: str) -> Spec | None:
    """The spec of a dotted key, or None for a key no spec covers."""
    if key in SCHEMA:
        return SCHEMA[key]
    parent, _, name = key.rpartition(".")
    if parent + "." not in OPEN_KEYS:
        return None
    return {"_target_": TARGET, "_partial_": PARTIAL}.get(name, OPEN_KEYS[parent + "."])
