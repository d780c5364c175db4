"""The `fleet` entry point: the command table matches what each module registers."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from fleet.cli.main import COMMANDS, build_parser, main


@pytest.mark.parametrize("module", list(COMMANDS))
def test_each_module_registers_the_commands_the_table_names(module: str) -> None:
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register(sub)
    assert tuple(sub.choices) == COMMANDS[module]


def test_the_full_parser_knows_every_command() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(sub.choices) == sorted(n for names in COMMANDS.values() for n in names)


def test_plan_loads_no_database_layer() -> None:
    code = (
        "import sys; from fleet.cli.main import build_parser; build_parser('plan'); "
        "heavy = ('sqlalchemy', 'alembic', 'sqlmodel', 'prefect'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unknown_command_lists_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["pland"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'pland'" in err and "approvals" in err and "plan" in err
