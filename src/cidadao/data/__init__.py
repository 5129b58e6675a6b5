"""Package data: the real PNCP sample (PNCP, via Transparência Brasil; see pncp-sample/PROVENANCE.md)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import NamedTuple


class SamplePaths(NamedTuple):
    contratacoes: Path  # 89 real contratações (modalidade 6), flattened CSV with data.-prefixed columns
    resultados: Path  # 81 real item results with supplier data
    provenance: Path


def sample_paths() -> SamplePaths:
    """Files of the shipped real sample. The package is installed unzipped, so these are real paths."""
    root = Path(str(files(__name__) / "pncp-sample"))
    return SamplePaths(
        contratacoes=root / "amostra_contratacoes.csv",
        resultados=root / "amostra_resultados.csv",
        provenance=root / "PROVENANCE.md",
    )
