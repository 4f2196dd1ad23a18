"""One function per pipeline stage, the same for every driver (CLI, DVC, Hydra)."""
