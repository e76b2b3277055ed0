"""Analysis of finished runs: `python -m dann.analyze RUN_DIR… [--no-tsne] [--no-wandb] [--max-points N] …`.

    python -m dann.analyze outputs/2025-01-31/10-00-00       # one run
    python -m dann.analyze multirun/2025-01-31/10-00-00      # every run of a sweep

For each run, rebuilt from its `summary.json` config and `checkpoints/last.pt`: the proxy A-distance
between source validation and target test features (and raw inputs), a t-SNE of the features, the
decision boundary on 2-d inputs, the target test confusion matrix and per-class accuracy, and the
features themselves, in `analysis.json` and `analysis/` beside the summary; and, for a run that
used W&B, the figures and numbers logged to its W&B run, resumed.

restore (run directory → data and network) → features → pad, plots → analysis (analysis.json) → wandb_log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dann.analyze.analysis import Options, analyze_run
from dann.analyze.pad import proxy_a_distance
from dann.analyze.restore import read_summary
from dann.errors import DannError, RunDirError

__all__ = ["Options", "analyze_run", "find_runs", "main", "proxy_a_distance"]

log = logging.getLogger("dann.analyze")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dann.analyze",
        description="Analyse finished runs: proxy A-distance, t-SNE, decision boundary (2-d inputs), confusion "
        "matrix and feature export, written to analysis.json and analysis/ in each run directory, and logged to "
        "the run's W&B run when it had one.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR", help="run directories, or sweep directories")
    parser.add_argument("--no-tsne", dest="tsne", action="store_false", help="skip the t-SNE plot (the slowest part)")
    parser.add_argument(
        "--max-points",
        type=_positive,
        default=Options.max_points,
        metavar="N",
        help=f"at most N examples per domain for the proxy A-distance and t-SNE (default {Options.max_points})",
    )
    parser.add_argument(
        "--no-wandb", dest="wandb", action="store_false", help="do not log the analysis to the run's W&B run"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, the default), cpu, cuda, cuda:N")
    parser.add_argument("--data-root", metavar="DIR", help="where the data is, if not at the run's dataset.root")
    parser.add_argument(
        "--trust", action="store_true", help="build the classes a run's config names even outside dann's own"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write analysis.json and analysis/ under DIR instead of beside each summary.json (a read-only run "
        "directory): in DIR itself for a run directory given, in DIR/<its path under the directory given> for a "
        "sweep's runs",
    )
    return parser.parse_args(argv)


def find_runs(paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """(run directory, named) pairs: each path holding summary.json, else every run directory under it.

    `named`: the user named this run directory itself. Runs found in a sweep that did not finish
    are skipped there (a sweep has failed and skipped jobs), but a named one must have finished.
    """
    return [(run_dir, named) for run_dir, named, _ in _find_runs(paths)]


def _find_runs(paths: Sequence[Path]) -> list[tuple[Path, bool, Path]]:
    """(run directory, named, its path relative to the path given: "." for a named one)."""
    runs = []
    for path in paths:
        if (path / "summary.json").is_file():
            runs.append((path, True, Path(".")))
            continue
        if not path.is_dir():
            raise RunDirError(f"{path}: no such directory")
        found = sorted(summary.parent for summary in path.rglob("summary.json"))
        if not found:
            raise RunDirError(f"{path}: not a run directory, and no run directory (holding summary.json) under it")
        runs += [(run_dir, False, run_dir.relative_to(path)) for run_dir in found]
    return runs


def _out_dirs(runs: list[tuple[Path, bool, Path]], out: Path | None) -> list[Path | None]:
    """Where each run's analysis goes: beside its summary (None), or under `out`, one directory per run."""
    if out is None:
        return [None] * len(runs)
    dirs = [out / relative for _, _, relative in runs]
    for i, target in enumerate(dirs):
        if target in dirs[:i]:
            other = runs[dirs.index(target)][0]
            raise RunDirError(
                f"--out: {other} and {runs[i][0]} would both write their analysis to {target}; analyse them one "
                "at a time, each with its own --out"
            )
    return dirs


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = Options(args.tsne, args.max_points, args.device, args.data_root, args.trust, args.wandb)
    try:
        runs = _find_runs(args.paths)
        for (run_dir, named, _), out_dir in zip(runs, _out_dirs(runs, args.out), strict=True):
            if not named and _status(run_dir) != "finished":
                log.info("%s: skipped (status %s)", run_dir, _status(run_dir))
                continue
            analysis = analyze_run(run_dir, options, out_dir)
            pad = analysis["pad"]
            log.info(
                "%s: proxy A-distance %.3f (raw inputs %.3f), target accuracy %.3f → %s",
                run_dir,
                pad["features"],
                pad["raw"],
                analysis["target_acc"],
                (out_dir or run_dir) / "analysis.json",
            )
    except DannError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)


def _status(run_dir: Path) -> str | None:
    try:
        return read_summary(run_dir / "summary.json").get("status")
    except (RunDirError, AttributeError):  # unreadable, too large, or not a mapping
        return None


def _positive(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text}")
    return value
