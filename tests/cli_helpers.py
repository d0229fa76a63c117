"""Shared by the test_cli_* files: the fast feature flags and the check of a refused command (exit 2)."""

from __future__ import annotations

from vidcorr.cli import main


FAST = ["--features", "lab-pixels", "--size", "120"]


def _fails(argv, capsys, *expected) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    return err
