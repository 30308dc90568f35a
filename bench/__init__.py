"""Benchmarks: run by hand (`python -m bench.<name>`), never in CI; results in bench/results/."""
