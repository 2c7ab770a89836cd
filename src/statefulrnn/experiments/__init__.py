"""Experiments built on the library: the seed comparisons (and sweeps)."""
