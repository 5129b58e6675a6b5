"""The README is the user's reference for settings and commands: keep it in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cidadao.cli import app
from cidadao.config import Settings

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`{name.upper()}`" in README


def test_the_first_two_commands_are_the_fresh_machine_ones() -> None:
    commands = [line.strip() for line in README.splitlines() if line.startswith("    ")][:2]
    assert commands[0].endswith("cidadao up --demo")
    assert "pip install -e ." in commands[0]
    assert commands[1] == "bash scripts/test"


@pytest.mark.parametrize(
    "command",
    [["up"], ["demo"], ["db", "upgrade"], ["config", "show"], ["ingest", "file"], ["ingest", "pncp"],
     ["generate"], ["analyse"], ["rules"], ["monitor"], ["alerts", "dispatch"], ["apikey", "create"]],
)  # fmt: skip
def test_documented_commands_exist_with_help(command: list[str]) -> None:
    assert f"cidadao {' '.join(command)}" in README
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
