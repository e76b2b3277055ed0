"""`python -m dann.data` (also `dann-data`): the benchmarks' files, from the declarations the loaders use.

    python -m dann.data list                    each benchmark: where its files go, their size, present or not
    python -m dann.data verify [BENCHMARK ...]   each download's checksum: ok, mismatch, missing, no known sum
    python -m dann.data fetch BENCHMARK ...      download (mirrors in turn, checksummed) and unpack
    python -m dann.data where BENCHMARK          by hand: the files, their addresses, the layout to unpack into

Files go under --root, else $DANN_DATA, else ./data (what dataset.root defaults to).
Exit status: 0 done; 1 a checksum mismatch, a missing file (verify) or a failed download (fetch); 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dann.data.catalog import BENCHMARKS, Benchmark, fetch
from dann.data.download import file_digests
from dann.errors import DataError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    root = Path(args.root or os.environ.get("DANN_DATA") or "data")
    try:
        return args.command(args, root)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dann.data", description="The benchmarks' files: list, verify, fetch, where to get them."
    )
    parser.add_argument("--root", metavar="DIR", help="the data root (default: $DANN_DATA, else ./data)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    names = {"type": _benchmark, "metavar": "BENCHMARK"}
    which = f"one of {', '.join(BENCHMARKS)}"

    listing = commands.add_parser("list", help="each benchmark: where its files go, their size, whether present")
    listing.set_defaults(command=list_benchmarks)
    verify = commands.add_parser("verify", help="checksums of the downloaded files (default: every benchmark)")
    verify.add_argument("benchmarks", nargs="*", help=which, **names)
    verify.set_defaults(command=verify_benchmarks)
    getting = commands.add_parser("fetch", help="download and unpack, trying each mirror in turn")
    getting.add_argument("benchmarks", nargs="+", help=which, **names)
    getting.set_defaults(command=fetch_benchmarks)
    where = commands.add_parser("where", help="the files to get by hand, their addresses and the layout")
    where.add_argument("benchmarks", nargs="+", help=which, **names)
    where.set_defaults(command=where_benchmarks)
    return parser.parse_args(argv)


def _benchmark(name: str) -> str:
    if name not in BENCHMARKS:
        raise argparse.ArgumentTypeError(f"no benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    return name


def list_benchmarks(args: argparse.Namespace, root: Path) -> int:
    print(f"data root: {root}")
    for b in BENCHMARKS.values():
        present = [need for need in b.needs if (root / need).exists()]
        state = "present" if len(present) == len(b.needs) else "partly present" if present else "missing"
        known = [d.size for d in b.downloads]
        download = f"{_size(sum(known))} to download" if all(known) else "download size unknown"
        on_disk = f", {_size(_disk_usage(root / b.folder))} on disk" if (root / b.folder).exists() else ""
        fetchable = "" if b.downloadable else "; by hand only (no checksum known): see `where`"
        print(f"{b.name:<12} {state:<15} {root / b.folder}  ({download}{on_disk}){fetchable}")
    return 0


def verify_benchmarks(args: argparse.Namespace, root: Path) -> int:
    """One line per download; a mismatch fails, and so does a missing file of a benchmark named."""
    named = bool(args.benchmarks)
    failed = False
    for name in args.benchmarks or BENCHMARKS:
        for path, status in verify(BENCHMARKS[name], root):
            failed = failed or status.startswith("mismatch") or (status == "missing" and named)
            print(f"{name}: {path}: {status}")
    return 1 if failed else 0


def verify(benchmark: Benchmark, root: Path) -> list[tuple[Path, str]]:
    """(path, status) of each download: ok, mismatch (…), missing, or no known sum; with the SHA-256 of a
    file that is there (the releases publish only MD5s, which are what is checked)."""
    checked = []
    for item in benchmark.downloads:
        path = root / item.path
        if not path.is_file():
            checked.append((path, "missing"))
            continue
        md5, sha256 = file_digests(path)
        if item.md5 is None:
            status = "no known sum"
        elif md5 == item.md5:
            status = "ok (MD5 matches)"
        else:
            status = f"mismatch (MD5 {md5}, expected {item.md5}): delete it and fetch it again"
        checked.append((path, f"{status}; SHA-256 {sha256}"))
    return checked


def fetch_benchmarks(args: argparse.Namespace, root: Path) -> int:
    """Each benchmark in turn; a failed one is reported (each mirror's failure in one line) and the next tried."""
    failed = False
    for name in args.benchmarks:
        benchmark = BENCHMARKS[name]
        if not benchmark.downloadable:
            print(
                f"{name}: not downloaded (no checksum of it is known); get it by hand: python -m dann.data where {name}"
            )
            failed = True
            continue
        failures = []

        def report(line: str, name: str = name, failures: list = failures) -> None:
            failures.append(line)
            print(f"{name}: failed: {line}")

        try:
            fetch(benchmark, root, report=report)
        except DataError as e:  # each mirror's failure is printed already; an unpacking failure is not
            reason = "every mirror failed" if failures else str(e)
            print(f"{name}: {reason}; get it by hand: python -m dann.data where {name}")
            failed = True
            continue
        print(f"{name}: ok, in {root / benchmark.folder}")
    return 1 if failed else 0


def where_benchmarks(args: argparse.Namespace, root: Path) -> int:
    for name in args.benchmarks:
        print(describe(BENCHMARKS[name], root))
    return 0


def describe(benchmark: Benchmark, root: Path) -> str:
    """What to get by hand for `benchmark` and where to put it, as text."""
    lines = [f"{benchmark.title} ({benchmark.name})" + (f": {benchmark.home}" if benchmark.home else "")]
    for item in benchmark.downloads:
        sizes = f", {_size(item.size)}" if item.size else ""
        md5 = f", MD5 {item.md5}" if item.md5 else ", no known checksum"
        lines.append(f"  {Path(item.path).name}{sizes}{md5}: {item.how(root)}")
        lines += [f"    {url}" for url in item.mirrors] or [f"    from {benchmark.home}"]
    if benchmark.note:
        lines.append(f"  note: {benchmark.note}")
    lines.append(f"layout under {root}:")
    lines += [f"  {line}" for line in benchmark.layout.splitlines()]
    return "\n".join(lines)


def _disk_usage(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


if __name__ == "__main__":
    sys.exit(main())
