"""Benchmarks (`make bench`): figures recorded in experiments/benchmarks/README.md."""
