"""Benchmarks of the illustration pipeline: `python -m bench [--quick] [NAME ...]`."""
