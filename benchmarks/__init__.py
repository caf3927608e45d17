"""Benchmarks run by `make bench`; each module's section of docs/benchmarks.md is rewritten."""
