"""A run on disk: its directory and lock, its identity, checkpoints, signals, what it logs
(metrics.jsonl, summary.json, W&B), reading its files back, and a sweep's leftovers."""
