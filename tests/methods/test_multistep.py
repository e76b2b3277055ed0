"""MCD's discrepancy and SHOT's losses by hand, and SHOT's guarantee: after stage 1 the source stream is never read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import dann.training.loop as loop_module
from dann.methods.mcd import classifier_discrepancy
from dann.methods.shot import information_maximisation
from dann.runs.tracking import RunLogger
from dann.training.loop import RunContext, train
from tests.helpers import SHORT_RUN, compose_config, only, run_cli
from tests.methods.test_method_contract import LOOP, build


def test_mcd_discrepancy_by_hand():
    logits1 = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p1 = [.5, .5], [.75, .25]
    logits2 = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # p2 = [.75, .25], [.5, .5]
    # |.5 − .75| + |.5 − .25| + |.75 − .5| + |.25 − .5| = 1.0, over B·C = 4
    assert classifier_discrepancy(logits1, logits2).item() == pytest.approx(0.25, abs=1e-6)
    assert classifier_discrepancy(logits1, logits1).item() == 0.0


def test_shot_information_maximisation_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = [.5, .5], [.75, .25]; p̄ = [.625, .375]
    entropy = (math.log(2.0) + -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    diversity = 0.625 * math.log(0.625) + 0.375 * math.log(0.375)
    assert information_maximisation(logits).item() == pytest.approx(entropy + diversity, abs=1e-6)


class CountingStream:
    """A stream that records the loop step at which each batch is drawn from it."""

    def __init__(self, stream, steps: list[int], state):
        self.stream, self.steps, self.state = stream, steps, state

    def __next__(self):
        self.steps.append(self.state.step)
        return next(self.stream)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def test_shot_never_reads_the_source_stream_after_stage_one(tmp_path: Path, monkeypatch):
    reads: list[int] = []
    original = loop_module.TrainState.__init__

    def counting_init(self, engine, source, target):
        original(self, engine, CountingStream(source, reads, self), target)

    monkeypatch.setattr(loop_module.TrainState, "__init__", counting_init)
    cfg, data, engine = build("shot")
    wandb = OmegaConf.to_container(compose_config("logger=none").logger.wandb)
    with RunLogger(tmp_path, wandb=wandb, config={}, job_type="shot", resume_step=None) as log:
        summary = train(engine, data, log, LOOP, RunContext(cfg.seed, torch.device("cpu"), tmp_path, {}))
    stage1 = int(LOOP.steps * 0.5)  # conf/method/shot.yaml's stage1_fraction
    assert reads == list(range(1, stage1 + 1))  # every stage-1 step drew one batch, no later step any
    assert summary["source_steps"] == stage1 and summary["source_free"] is True


def test_a_shot_run_says_it_is_source_free_and_another_method_does_not(tmp_path: Path):
    for method in ("shot", "dann"):
        result = run_cli(f"method={method}", *SHORT_RUN, f"hydra.run.dir={tmp_path / method}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        summary = json.loads(only((tmp_path / method).glob("summary.json")).read_text())
        assert summary["source_free"] is (method == "shot")
        assert summary["source_steps"] == (20 if method == "shot" else 40)
