"""Benchmarks and long checks, run as modules from the repository root: `python -m bench.run`
(`make bench`), `python -m bench.faults` (`make faults`), `python -m bench.consistency`
(`make consistency`). What they share is in bench/harness/; the app they serve runs with
bench/settings.py. The product never imports anything from here.
"""
