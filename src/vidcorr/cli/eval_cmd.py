"""`vidcorr eval <task>`: run a model with a propagation preset on a benchmark and score it.

Each task module in `TASK_MODULES` has ``register(tasks)`` adding its sub-parser to the `eval`
sub-parsers object; every task writes ``--out DIR/results.json`` with its headline metrics.
"""

from __future__ import annotations

import argparse
import importlib

TASK_MODULES = [
    "vidcorr.cli.eval_davis",
    "vidcorr.cli.eval_tracking",
    "vidcorr.cli.eval_jhmdb",
    "vidcorr.cli.eval_vip",
]


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    parser = subparsers.add_parser("eval", help="propagate labels on a benchmark and score them")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name in TASK_MODULES:
        importlib.import_module(name).register(tasks)
    return tasks
