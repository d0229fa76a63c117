"""Benchmark metrics, one module per benchmark (DAVIS J&F in `davis`), each matching its official code."""
