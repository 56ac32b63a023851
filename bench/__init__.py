"""Benchmarks: `make bench-<part>` runs `python -m bench.<part>`; the last line printed is JSON."""
