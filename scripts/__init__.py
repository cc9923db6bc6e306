"""Companion CLIs that act on a stack: `python -m scripts.<name>` (promote, failback, backup, restore, validate, drill)."""
