"""
Benchmarks run by hand from the checkout (`python -m benchmarks.perf` and so on), never in
CI; their results are written down in docs/benchmarks.md and benchmarks/RESULTS.md.
"""
