"""Test helpers: compose the real Hydra config, run the real CLI in a subprocess, read its outputs.

The fixture writers that build datasets in their real on-disk formats are beside this file:
`tests.helpers.digit_files` and `tests.helpers.image_files`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dann.config import compose
from dann.config.compose import CONF_DIR  # noqa: F401 - the configs dann.run reads

REPO = Path(__file__).resolve().parents[2]


def compose_config(*overrides: str):
    """The config `python -m dann.run <overrides>` would see, composed as it does (`dann.config.compose`).

    Each composition is made once per test process and handed out as a deep copy: conf/ does not change
    while the tests run, and Hydra's composition (about 0.2 s) was most of the time of many short tests.
    Overrides that name a search path (a user's config folder that a test writes) are composed every time."""
    if any("searchpath" in override for override in overrides):
        return compose.compose_config(*overrides)
    return copy.deepcopy(_composed(overrides))


@functools.cache
def _composed(overrides: tuple[str, ...]):
    return compose.compose_config(*overrides)


# A short real run (about a second of training on the moons): 40 steps, two evaluations, no W&B.
SHORT_RUN = ("logger=none", "trainer.steps=40", "trainer.eval_every=20", "trainer.log_every=10")


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would give `python -m dann.run`, without the developer's W&B settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return full_env | {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"} | (env or {})


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run `python -m dann.run <args>` as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "dann.run", *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, run_dir: Path) -> subprocess.Popen:
    """Start `python -m dann.run <args>` in `run_dir` (hydra.run.dir) without waiting for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "dann.run", *args, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 900) -> None:
    """Until the run's metrics.jsonl has a record at `step` or later; the process must still be running."""
    deadline = time.time() + timeout
    metrics = run_dir / "metrics.jsonl"
    while time.time() < deadline:
        assert process.poll() is None, "the run ended first: " + str(process.communicate())
        if metrics.exists() and any(r["step"] >= step for r in read_jsonl(metrics)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no step {step} in {metrics} after {timeout} s")


def only(paths) -> Path:
    """The single path of a glob; fails listing what was found otherwise."""
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def moons_batch(with_target_labels: bool):
    """One fixed training batch of 2-d points, 8 per domain (target shifted by +1): for methods' step tests."""
    import torch

    from dann.methods import Batch

    g = torch.Generator().manual_seed(1)
    return Batch(
        source_x=torch.randn(8, 2, generator=g),
        source_y=torch.randint(0, 2, (8,), generator=g),
        target_x=torch.randn(8, 2, generator=g) + 1.0,
        target_y=torch.randint(0, 2, (8,), generator=g) if with_target_labels else None,
    )


def moons_dann_with_quick_evaluation(runtime=None):
    """The default moons config, its data with 64-example evaluation splits (quick evaluations), and
    the engine training DANN over it from seed 0 (`build_engine`) in `runtime` (a `dann.training.precision.Runtime`;
    float32 by default): (cfg, data, engine), for tests that run the real training loop."""
    from dataclasses import replace

    import torch

    from dann.builders import build_dataset, build_engine, build_network
    from dann.data import Split
    from dann.training.precision import Runtime, prepare

    cfg = compose_config("logger=none", "method=dann")
    data = build_dataset(cfg).load()
    few = {name: getattr(data, name) for name in ("source_val", "target_test")}
    data = replace(data, **{name: Split(split.inputs[:64], split.labels[:64]) for name, split in few.items()})
    torch.manual_seed(0)
    network, runtime = build_network(cfg, data.input_shape, data.num_classes), runtime or Runtime.FP32
    prepare(network, runtime)
    return cfg, data, build_engine(cfg, network, runtime)


def served_from(benchmark, mirrors: list[str], md5: str | None = None):
    """A `dann.data.catalog.Benchmark` whose first download comes from `mirrors` (file:// URLs in tests),
    checked against `md5` if given (else the release's own)."""
    from dataclasses import replace

    first = benchmark.downloads[0]
    first = replace(first, mirrors=tuple(mirrors), md5=md5 or first.md5)
    return replace(benchmark, downloads=(first, *benchmark.downloads[1:]))
