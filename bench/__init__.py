"""Benchmark harness for mhd2 (see README.md); run ``python bench/run.py``."""
