"""Benchmarks run by `tracesim bench NAME` and `make bench`."""
