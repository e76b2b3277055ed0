"""MkDocs hook: the published numbers of `experiments/references.yaml`, as tables, in results/methods.md.

The page holds the marker `<!-- references.yaml -->`; each build replaces it with one table per dataset (rows:
method, backbone and source; columns: the tasks, then the source's own average), read and checked by the same
`load_references` that `python -m dann.report --reference` uses. The numbers live in one file only.
"""

from __future__ import annotations

import sys
from pathlib import Path

MARKER = "<!-- references.yaml -->"
PAGE = "results/methods.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    root = Path(config.config_file_path).parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # this checkout's dann, whatever is installed
    from dann.report.collect import load_references

    if MARKER not in markdown:
        raise ValueError(f"{PAGE}: the marker {MARKER} is missing")
    return markdown.replace(MARKER, tables(load_references(root / "experiments" / "references.yaml")))


def percent(value: float) -> str:
    """A fraction as %, with the digits the source gave (0.5225 → 52.25, 0.730 → 73.0)."""
    text = f"{value * 100:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def tables(references: dict) -> str:
    out = []
    datasets = dict.fromkeys(e["dataset"] for e in references["results"] + references["averages"])
    for dataset in datasets:
        results = [e for e in references["results"] if e["dataset"] == dataset]
        averages = [e for e in references["averages"] if e["dataset"] == dataset]
        tasks = list(dict.fromkeys(f"{e['source']}→{e['target']}" for e in results))
        rows: dict[tuple, dict] = {}
        for e in results:
            key = (e["method"], e["backbone"], e["cite"], e.get("metric", "target/acc"))
            rows.setdefault(key, {})[f"{e['source']}→{e['target']}"] = percent(e["value"])
        for e in averages:
            key = (e["method"], e["backbone"], e["cite"], e.get("metric", "target/acc"))
            rows.setdefault(key, {})["average"] = f"{percent(e['value'])} [{e['tasks']} tasks]"
        header = ["method", "backbone", "source", "metric", *tasks, "published average"]
        out += [f"## `{dataset}`\n", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for (method, backbone, cite, metric), cells in rows.items():
            values = [cells.get(task, "") for task in tasks] + [cells.get("average", "")]
            out.append(f"| `{method}` | {backbone} | [{cite}] | `{metric}` | " + " | ".join(values) + " |")
        out.append("")
    out.append("## Sources\n")
    for key, citation in references["citations"].items():
        out.append(f"- **[{key}]** {citation}")
    return "\n".join(out) + "\n"
