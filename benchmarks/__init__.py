"""Speed benchmarks, run together by `python -m benchmarks` (see `benchmarks/__main__.py`).

Each module measures one thing in one run and returns {"figures": {name: number}, "info": {...}};
the runner repeats it in fresh processes and reports medians. Never part of the test run: the
tests only check, at tiny sizes, that each benchmark runs (tests/test_benchmarks.py).
"""
