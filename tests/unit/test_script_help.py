"""Every command's `--help` (and each subcommand's) prints and exits 0: argparse %-formats help strings, so a stray
`%p` in a help text breaks `--help` only when it is asked for."""

from __future__ import annotations

import argparse
import importlib

import pytest

COMMANDS = ["backup", "failback", "guard", "promote", "restore", "status", "validate", "wal", "drill.run"]


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    return [
        name for action in parser._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices
    ]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_prints_for_the_command_and_each_subcommand(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"scripts.{name}")
    subcommands = _subcommands(module.build_parser()) if hasattr(module, "build_parser") else []
    for argv in [["--help"], *([sub, "--help"] for sub in subcommands)]:
        with pytest.raises(SystemExit) as exit_info:
            module.main(argv)
        assert exit_info.value.code == 0, argv
        assert "usage: python -m scripts." in capsys.readouterr().out, argv
