"""Finding a dataset's image files and checking them: class folders, list files, and paths that stay inside.

Everything here works from directory listings and list files alone, before anything is
decoded: missing files, empty or missing class folders and malformed list files are
found at load time, before training.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from dann.errors import DataError, describe_error

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ListedPaths:
    """Checks that every path a list file names stays inside its dataset's folder.

    A list or labels file (DomainNet's splits, VisDA's image_list.txt, MNIST-M's labels)
    names files by paths relative to `folder`. A line such as `clipart/x/../../../../etc/passwd 0`
    must not make a run read, list or train on files elsewhere, so each path is resolved
    (`..` and symlinks followed, as `Path.resolve` does) and compared with the resolved folder:
    a symlinked data root or dataset folder still works, but a symlink inside the dataset that
    leads out does not. Absolute paths are refused outright.

    Strings, not `Path`s, and each folder a list names resolved once (DomainNet lists ~100k
    files in 345 folders): a file is resolved on its own only if it is a symlink itself.
    """

    def __init__(self, list_file: Path, folder: Path):
        self.list_file = list_file
        self.folder = folder
        self.home = os.path.realpath(folder)
        self._resolved_folders: dict[str, str] = {}

    def check(self, entry: str, number: int) -> None:
        """Raise a `DataError` naming the line unless `folder`/`entry` lies inside `folder`."""
        normal = os.path.normpath(entry)
        if os.path.isabs(entry) or normal == ".." or normal.startswith("../"):
            raise DataError(
                f"{self.list_file}, line {number}: {entry!r} is not a path inside {self.folder}: a list "
                f"file may only name files inside its dataset's folder, by relative paths. The file is "
                f"corrupt or was not made for this dataset: get the release's {self.list_file.name} "
                f"again, or remove that line"
            )
        # The path as written, not `normal`: "link/../x" is wherever link's target has a sibling x.
        parent, name = os.path.split(entry)
        if parent not in self._resolved_folders:
            self._resolved_folders[parent] = self._resolve(os.path.join(self.home, parent), entry, number)
        path = os.path.join(self._resolved_folders[parent], name)
        if name == ".." or os.path.islink(path):
            path = self._resolve(path, entry, number)
        if path != self.home and not path.startswith(self.home.rstrip(os.sep) + os.sep):
            raise DataError(
                f"{self.list_file}, line {number}: {entry!r} leads to {path}, outside {self.home}, "
                f"through a symlink; a dataset's files must lie inside its folder: replace the symlink "
                f"by the files it points to, or point dataset.root at a copy whose files are all inside it"
            )

    def _resolve(self, path: str, entry: str, number: int) -> str:
        try:
            return os.path.realpath(path)
        except ValueError as e:  # a NUL byte in the line (realpath leaves what it cannot resolve as it is)
            raise DataError(
                f"{self.list_file}, line {number}: {entry!r} cannot be resolved ({describe_error(e)}); "
                f"the file is corrupt: get the release's {self.list_file.name} again, "
                f"or remove that line"
            ) from e


def scan_class_folders(directory: Path) -> dict[str, list[str]]:
    """Class folder name → its image files (paths relative to `directory`, subfolders included), sorted.

    Hidden entries are skipped and files that are not images by extension are ignored.
    """
    classes = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            classes[entry.name] = _image_files(directory, entry.name)
    return classes


def _image_files(directory: Path, class_name: str) -> list[str]:
    files = []
    for folder, subfolders, filenames in os.walk(directory / class_name):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = Path(folder).relative_to(directory)
        files += [
            str(relative / f)
            for f in sorted(filenames)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        ]
    return files


def check_class_folders(
    found: dict[str, list[str]], expected: Sequence[str] | None, where: Path, title: str, fix: str
) -> None:
    """Every expected class has a non-empty folder and no other class folder exists.

    `expected` None: any names (dataset=folder), but still no empty folder. `fix` says how
    to repair the copy.
    """
    problems = []
    if expected is not None:
        problems += _differences(set(expected), set(found), "missing class folders", "unexpected class folders")
    empty = [name for name, files in found.items() if not files]
    if empty:
        problems.append(f"empty class folders (no {'/'.join(IMAGE_EXTENSIONS)} files): {names(empty)}")
    if problems:
        raise DataError(f"{title}: {where} has {'; '.join(problems)}. {fix}")


def _differences(expected: set[str], found: set[str], missing_label: str, extra_label: str) -> list[str]:
    problems = []
    if expected - found:
        problems.append(f"{missing_label}: {names(expected - found)}")
    if found - expected:
        problems.append(f"{extra_label}: {names(found - expected)}")
    return problems


def names(items: Iterable[str], shown: int = 20) -> str:
    """Sorted, comma-separated, at most `shown` of them (DomainNet has 345 classes)."""
    items = sorted(items)
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def labeled_files(by_class: dict[str, list[str]], classes: Sequence[str]) -> tuple[list[str], list[int]]:
    """Files in class order, each with its class's index in `classes`."""
    files, labels = [], []
    for index, name in enumerate(classes):
        files += by_class[name]
        labels += [index] * len(by_class[name])
    return files, labels


def read_list_file(
    list_file: Path, base: Path, classes: Sequence[str], class_part: int, title: str, fix: str
) -> tuple[list[str], list[int]]:
    """Files and labels of a list file of lines `relative/path label` (paths relative to `base`).

    The class is the path's `class_part`-th component; its label must be its index in
    `classes`, so that a list and the class order can never silently disagree. Every
    path must stay inside `base` (checked before anything it names is touched), and every
    listed file must exist (checked from the listings of the folders the list names).
    """
    files, labels = [], []
    label_of = {name: index for index, name in enumerate(classes)}
    inside = ListedPaths(list_file, base)
    listings: dict[Path, set[str]] = {}
    missing = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        path, label = _parse_line(list_file, number, line, label_of, class_part, inside)
        folder = (base / path).parent
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        if Path(path).name not in listings[folder]:
            missing.append(str(base / path))
        files.append(path)
        labels.append(label)
    if not files:
        raise DataError(f"{title}: {list_file} lists no images. {fix}")
    if missing:
        raise DataError(
            f"{title}: {len(missing)} images listed in {list_file} are missing: {names(missing, shown=5)}. {fix}"
        )
    return files, labels


def _parse_line(
    list_file: Path, number: int, line: str, label_of: dict[str, int], class_part: int, inside: ListedPaths
) -> tuple[str, int]:
    fields = line.rsplit(maxsplit=1)
    where = f"{list_file}, line {number}"
    if len(fields) != 2 or not fields[1].isdecimal():
        raise DataError(f"{where}: expected 'relative/path label', got {line.strip()!r}")
    path, label = fields[0], int(fields[1])
    inside.check(path, number)
    parts = Path(path).parts
    name = parts[class_part] if len(parts) > class_part + 1 else None
    if name not in label_of:
        raise DataError(
            f"{where}: {path!r} is not under a folder of one of the {len(label_of)} classes "
            f"(expected <class>/<file> at path component {class_part + 1})"
        )
    if label != label_of[name]:
        raise DataError(
            f"{where}: label {label} for class '{name}', whose label is {label_of[name]}; "
            "the list file does not belong to this dataset or is corrupt"
        )
    return path, label


def check_same_classes(source: Iterable[str], target: Iterable[str], source_where: str, target_where: str) -> None:
    """Source and target must name the same classes (classes are matched by name)."""
    problems = _differences(
        set(source), set(target), f"only in the source ({source_where})", f"only in the target ({target_where})"
    )
    if problems:
        raise DataError(
            f"the source and target classes differ: {'; '.join(problems)}. Classes are matched by "
            "folder name: rename, add or remove class folders so that both domains have the same ones"
        )


def warn_if_count_differs(title: str, found: int, release: int) -> None:
    """A different image count is legal (a cleaned copy) but worth a line in the log."""
    if found != release:
        log.warning("%s: %d images, the release has %d; a partial or modified copy?", title, found, release)
