"""Commands: (to be filled)."""

from cidadao.cli.app import app  # noqa: F401
