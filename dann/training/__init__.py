"""Training: the engine that takes one optimisation step, the loop around it, evaluation, and how
the step runs on its device (precision, several processes, the progress line)."""
