"""What importing the moons path costs: every subprocess the CLI starts pays the import of dann.builders
and dann.data, so the heavy libraries only some datasets and backbones use (torchvision, sklearn) must be
imported where those are built, not at the top of a module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO, cli_env

HEAVY = ("torchvision", "sklearn")


# dann.builders imports dann.data and dann.models; dann.config.validate (which every run imports) the schema too.
@pytest.mark.parametrize("module", ["dann.builders", "dann.config.validate"])
def test_importing_the_moons_path_leaves_out_torchvision_and_sklearn(module):
    # A fresh interpreter: this one has long imported both for other tests.
    code = f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    brought = sorted({name.split(".")[0] for name in done.stdout.split()})
    assert brought == [], (
        f"import {module} brought in {', '.join(brought)} ({len(done.stdout.split())} modules); "
        "import them inside the function that needs them"
    )


def test_the_architecture_names_are_still_all_of_torchvisions():
    import torchvision

    from dann.models.feature_extractors import ARCHS

    assert list(ARCHS) == torchvision.models.list_models(module=torchvision.models)
    assert "resnet50" in ARCHS and "resnet19" not in ARCHS
