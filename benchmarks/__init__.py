"""Reproducible measurements that print JSON (results are stored under benchmarks/results/)."""
