"""Companion CLIs that act on a stack, run as `python -m scripts.<name>`."""
