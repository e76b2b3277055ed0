"""Configuration: what each setting may be (spec), the checks on a composed config (validate),
a config read back from a finished run (stored), and the user's own config folders (user_dirs)."""
