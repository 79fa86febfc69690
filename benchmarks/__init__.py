"""Benchmarks run by hand or by make; not part of the test suite."""
