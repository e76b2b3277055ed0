"""The analysis, logged to the run's own W&B run: the same run id, resumed, so that it sits beside the training curves.

As in training, W&B is a guest: a run without W&B (`logger=none`, mode disabled, no run id in the
checkpoint) is skipped silently, and any W&B failure is a warning; `analysis.json` and the PNGs are
written before and stand whatever happens here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dann.analyze.restore import FinishedRun
from dann.runs.tracking import wandb_mode

log = logging.getLogger(__name__)

IMAGES = ("tsne", "decision_boundary", "confusion")  # logged as analysis/<name> when the analysis made them
# Their PDFs (analysis.json's files <name>_pdf) are saved among the run's files, as analysis/<name>.pdf.


def log_analysis(run: FinishedRun, analysis: dict[str, Any], out_dir: Path) -> None:
    """Resume the run's W&B run (its files in `out_dir`, where the analysis is) and log the figures
    (PNGs as images, PDFs as files), the proxy A-distances, target accuracy and per-class accuracy."""
    settings = OmegaConf.select(run.config, "logger.wandb")
    run_id = run.state.get("wandb_run_id")
    if settings is None or not run_id:
        return
    mode = wandb_mode(str(settings.get("mode") or "disabled"))
    if mode == "disabled":
        return
    try:
        import wandb

        wandb_run = wandb.init(
            id=run_id,
            resume="allow",
            project=settings.get("project"),
            entity=settings.get("entity"),
            dir=str(out_dir),
            mode=mode,
            reinit="finish_previous",
            settings=wandb.Settings(quiet=True),  # no run history and summary printed at the end
        )
    except Exception as e:  # noqa: BLE001 - W&B must never fail the analysis
        log.warning("%s: W&B could not resume run %s (%s: %s); analysis.json has it all", run.run_dir, run_id, *_why(e))
        return
    try:
        images = {
            f"analysis/{name}": wandb.Image(str(out_dir / analysis["files"][name]))
            for name in IMAGES
            if name in analysis["files"]
        }
        rows = [[name, acc] for name, acc in zip(analysis["classes"], analysis["per_class_acc"], strict=True)]
        per_class = wandb.Table(columns=["class", "accuracy"], data=rows)
        # After the training's last step: a resumed offline run counts from 0, and `wandb sync` would drop
        # steps before those already uploaded.
        step = max(wandb_run.step, analysis["checkpoint_step"] + 1)
        wandb_run.log(images | {"analysis/per_class_acc": per_class}, step=step)
        for name in IMAGES:
            if f"{name}_pdf" in analysis["files"]:
                wandb_run.save(str(out_dir / analysis["files"][f"{name}_pdf"]), base_path=str(out_dir), policy="now")
        for probe, value in analysis["pad"].items():  # features, raw, features_rbf, raw_rbf
            wandb_run.summary[f"analysis/pad_{probe}"] = value
        wandb_run.summary["analysis/target_acc"] = analysis["target_acc"]
        wandb_run.summary["analysis/checkpoint_step"] = analysis["checkpoint_step"]
    except Exception as e:  # noqa: BLE001
        log.warning("%s: W&B logging of the analysis failed (%s: %s)", run.run_dir, *_why(e))
    finally:
        try:
            wandb_run.finish()
        except Exception as e:  # noqa: BLE001
            log.warning("%s: W&B finish failed (%s: %s)", run.run_dir, *_why(e))


def _why(e: Exception) -> tuple[str, str]:
    return type(e).__name__, " ".join(str(e).split())
