# Makes conf/ the package dann.conf (see pyproject.toml), so that Hydra finds the configs as
# `pkg://dann.conf` both in a clone installed with `pip install -e .` and in an installed wheel.
# Hydra needs this file to call the directory a package, and skips it when listing configs.
