"""The `tracesim` command and example programs."""
