"""Golden files of the engine's indicators: raw PNCP JSON Lines in, exact findings out.

`golden/<rule>.input.jsonl` holds the records (and `<rule>.sanctions.csv` a CEIS download when the rule needs
one); `golden/<rule>.expected.jsonl` the findings, one per line, in the engine's order. After a deliberate
change, regenerate with `UPDATE_GOLDEN=1 pytest tests/redflags/test_golden_engine.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from cidadao.redflags.engine import run_rules
from cidadao.redflags.frame import dataset_from_ndjson
from cidadao.sources.sanctions import read_sanctions

GOLDEN = Path(__file__).parent / "golden"
RULES = [
    "over_limit",
    "near_limit",
    "split_purchase",
    "short_notice",
    "sanctioned_supplier",
    "amendment_over_25pct",
    "emergency_over_1y",
    "repeat_supplier",
]


@pytest.mark.parametrize("rule", RULES)
def test_golden(rule: str) -> None:
    sanctions_path = GOLDEN / f"{rule}.sanctions.csv"
    data = dataset_from_ndjson(
        GOLDEN / f"{rule}.input.jsonl",
        read_sanctions(sanctions_path) if sanctions_path.exists() else None,
    )
    result = run_rules(data, [rule])
    produced = [finding.as_dict() for finding in result.findings]
    expected_path = GOLDEN / f"{rule}.expected.jsonl"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in produced))
    expected = [orjson.loads(line) for line in expected_path.read_bytes().splitlines() if line.strip()]

    assert produced == expected
    assert expected, "a golden file must flag something"
