"""The engine (dann.training.engine): one step is the method's losses, backward, the optimiser and lr steps, the
same for every method; `trainer.compile` compiles the whole loss computation, once."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch._dynamo

from dann.training.engine import Engine
from dann.training.precision import Runtime
from tests.methods.test_method_contract import batch, build


def test_a_step_is_the_methods_losses_backward_and_the_optimiser_step_by_hand():
    _, data, engine = build("dann", "optim=sgd")  # annealed lr, momentum
    by_hand = copy.deepcopy(engine.method)
    settings = {key: engine.optimizer.defaults[key] for key in ("momentum", "weight_decay", "nesterov")}
    optimizer = torch.optim.SGD(by_hand.parameter_groups(), lr=engine.base_lr, **settings)
    for step in range(3):
        progress = step / 10
        metrics = engine.step(batch(data, step), progress)
        for group in optimizer.param_groups:  # the annealed rate of this step, as the engine's schedule gives it
            group["lr"] = engine.base_lr * group["lr_mult"] * engine.lr_schedule(step, engine.total_steps)
        output = by_hand(batch(data, step), by_hand.scalars(progress))
        optimizer.zero_grad()
        (output.losses["label"] + output.losses["domain"]).backward()
        optimizer.step()
        assert torch.equal(metrics["train/label_loss"], output.losses["label"].detach())
        assert metrics["train/lambda"] == by_hand.scalars(progress)["lambda"]
    assert settings["momentum"] == 0.9  # the config's SGD: momentum state carried between steps
    for (name, mine), theirs in zip(engine.method.state_dict().items(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs), name


@pytest.mark.parametrize("name", ["dann", "two_stage"])  # two_stage: a new phase, then freezing, mid-run
def test_compile_covers_the_whole_loss_and_lambda_and_lr_changes_never_recompile(name: str, monkeypatch):
    graphs = []

    def recording(graph_module, example_inputs):  # a backend that keeps the traced graph and runs it as is
        graphs.append(graph_module)
        return graph_module.forward

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=recording))
    torch._dynamo.reset()
    _, data, eager = build(name, "optim=sgd")
    keys = eager.method.state_dict().keys()
    engine = Engine(eager.method, eager.optimizer, eager.total_steps, eager.lr_schedule, Runtime(compile=True))
    assert engine.method.state_dict().keys() == keys  # checkpoints unchanged
    lambdas, lrs = set(), set()
    # Any second compilation of the loss is an error: λ and the lr change at every step below.
    with torch._dynamo.config.patch(recompile_limit=1 if name == "dann" else 2, fail_on_recompile_limit_hit=True):
        for step in range(6):
            metrics = engine.step(batch(data, step), progress=step / 6, diagnose=step == 3)  # 3: eager, measured
            lambdas.add(metrics["train/lambda"])
            lrs.add(metrics["train/lr"])
    torch._dynamo.reset()
    assert len(lrs) == 6 and (name != "dann" or len(lambdas) == 6)  # they did change
    # One graph per phase (two_stage: source, then target), holding the feature extractor, the heads and the losses.
    assert len(graphs) == (1 if name == "dann" else 2)
    for graph in graphs:
        code = graph.code
        assert "cross_entropy" in code and "binary_cross_entropy_with_logits" in code
        assert code.count("linear") >= 4  # the MLP's layers and both heads
