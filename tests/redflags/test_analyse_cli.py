from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from cidadao.cli import app
from cidadao.redflags.base import REGISTRY

GOLDEN = Path(__file__).parent / "golden"
KEYS = ["rule", "rule_version", "record", "severity", "score", "message", "evidence", "legal_basis"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_analyse_writes_one_finding_per_line_and_a_summary(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "findings.jsonl"
    result = runner.invoke(app, ["analyse", str(GOLDEN / "over_limit.input.jsonl"), "--out", str(out)])

    assert result.exit_code == 0, result.output
    findings = _lines(out)
    assert [f["record"] for f in findings if f["rule"] == "over_limit"] == [
        f["record"] for f in _lines(GOLDEN / "over_limit.expected.jsonl")
    ]
    assert all(list(f) == KEYS for f in findings)
    assert "8 contratações, 1 contratos" in result.output
    assert "over_limit" in result.output


def test_json_array_page_and_sanctions_inputs(runner: CliRunner, tmp_path: Path) -> None:
    records = _lines(GOLDEN / "sanctioned_supplier.input.jsonl")
    page = tmp_path / "page.json"
    page.write_bytes(orjson.dumps({"data": records[:3], "totalRegistros": 3, "totalPaginas": 1}))
    array = tmp_path / "array.json"
    array.write_bytes(orjson.dumps(records[3:]))
    out = tmp_path / "findings.jsonl"
    result = runner.invoke(
        app,
        [
            "analyse", str(page), str(array), "--rules", "sanctioned_supplier", "--out", str(out),
            "--sanctions", str(GOLDEN / "sanctioned_supplier.sanctions.csv"),
        ],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert _lines(out) == _lines(GOLDEN / "sanctioned_supplier.expected.jsonl")
    assert "1 sanction(s) with a masked or blank id ignored" in result.output


def test_findings_go_to_stdout_without_out(runner: CliRunner) -> None:
    result = runner.invoke(app, ["analyse", str(GOLDEN / "near_limit.input.jsonl"), "--rules", "near_limit"])

    assert result.exit_code == 0
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 3


def test_config_file_changes_parameters(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "redflags.toml"
    config.write_text("[near_limit]\nband_low = 0.99\n", encoding="utf-8")
    out = tmp_path / "f.jsonl"
    args = ["analyse", str(GOLDEN / "near_limit.input.jsonl"), "--rules", "near_limit", "--out", str(out)]
    result = runner.invoke(app, [*args, "--config", str(config)])

    assert result.exit_code == 0
    assert [f["record"] for f in _lines(out)] == ["00394460000141-1-000003/2025"]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"this is not json\n", [], "no usable record"),
        (b'{"foo": 1}\n', [], "no usable record"),
        (None, ["--rules", "nope"], "unknown rule 'nope'"),
        (None, ["--config", "BAD"], "[near_limit] band_low: expected float"),
    ],
)
def test_unusable_input_or_options_exit_non_zero(
    runner: CliRunner, tmp_path: Path, content: bytes | None, extra: list[str], message: str
) -> None:
    path = tmp_path / "input.jsonl"
    (tmp_path / "bad.toml").write_text('[near_limit]\nband_low = "x"\n', encoding="utf-8")
    extra = [str(tmp_path / "bad.toml") if arg == "BAD" else arg for arg in extra]
    if content is None:
        path = GOLDEN / "over_limit.input.jsonl"
    else:
        path.write_bytes(content)
    result = runner.invoke(app, ["analyse", str(path), *extra])

    assert result.exit_code == 2
    assert message in result.output


def test_missing_file_exits_non_zero(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyse", str(tmp_path / "missing.jsonl")])

    assert result.exit_code == 2
    assert "cannot read" in result.output


@pytest.mark.parametrize(
    ("extra", "reported"),
    [
        (b"{broken\n", "1 unreadable pieces"),  # not JSON: the tolerant reader takes over
        (b'{"foo": 1}\n', "1 unrecognised objects"),  # JSON of neither kind
    ],
)
def test_unusable_lines_are_counted_and_the_rest_analysed(
    runner: CliRunner, tmp_path: Path, extra: bytes, reported: str
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes((GOLDEN / "over_limit.input.jsonl").read_bytes() + extra)
    out = tmp_path / "f.jsonl"
    result = runner.invoke(app, ["analyse", str(path), "--rules", "over_limit", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert reported in result.output
    assert len(_lines(out)) == 4


def test_rules_lists_every_indicator(runner: CliRunner) -> None:
    result = runner.invoke(app, ["rules"])

    assert result.exit_code == 0
    for rule in REGISTRY:
        assert rule in result.output
    assert "band_low = 0.9" in result.output
