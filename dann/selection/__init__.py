"""Label-free model selection: the criteria computed at each evaluation, and how each picks one
evaluation of a run."""
