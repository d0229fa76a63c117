"""Benchmark runners: each ties a model, a propagation preset and a dataset together and writes
``results.json`` with the task's headline metrics under their usual names."""
