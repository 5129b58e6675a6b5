from __future__ import annotations

from datetime import date
from pathlib import Path

import orjson
import pytest

from cidadao.sources.sanctions import SanctionsFormatError, read_sanctions, read_sanctions_counted

HEADER = (
    '"CADASTRO";"CÓDIGO DA SANÇÃO";"TIPO DE PESSOA";"CPF OU CNPJ DO SANCIONADO";"NOME DO SANCIONADO";'
    '"CATEGORIA DA SANÇÃO";"DATA INÍCIO SANÇÃO";"DATA FINAL SANÇÃO";"ÓRGÃO SANCIONADOR";'
    '"UF ÓRGÃO SANCIONADOR"'
)
ROWS = [
    '"CEIS";"1";"J";"11.222.333/0001-81";"FORNECEDOR TESTE LTDA";"Impedimento/proibição de contratar com '
    'prazo determinado";"01/02/2024";"31/01/2026";"Prefeitura Municipal de São Paulo";"SP"',
    '"CEIS";"2";"F";"***.456.789-**";"FULANO";"Suspensão";"01/02/2024";"";"Governo do Estado";"MG"',
    '"CNEP";"3";"J";"60.701.190/0001-04";"OUTRA S.A.";"Multa - Lei Anticorrupção";"15/03/2023";"";'
    '"Controladoria-Geral da União";"DF"',
]


def _csv(tmp_path: Path, encoding: str) -> Path:
    path = tmp_path / "ceis.csv"
    path.write_bytes(("\r\n".join([HEADER, *ROWS]) + "\r\n").encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_csv_download_read_by_column_name(tmp_path: Path, encoding: str) -> None:
    frame, masked = read_sanctions_counted(_csv(tmp_path, encoding))

    assert masked == 1  # the masked CPF cannot be matched to a supplier
    assert frame.to_dicts() == [
        {
            "sanction_list": "CEIS",
            "sanctioned_id": "11222333000181",
            "sanctioned_name": "FORNECEDOR TESTE LTDA",
            "category": "Impedimento/proibição de contratar com prazo determinado",
            "authority": "Prefeitura Municipal de São Paulo",
            "start_date": date(2024, 2, 1),
            "end_date": date(2026, 1, 31),
        },
        {
            "sanction_list": "CNEP",
            "sanctioned_id": "60701190000104",
            "sanctioned_name": "OUTRA S.A.",
            "category": "Multa - Lei Anticorrupção",
            "authority": "Controladoria-Geral da União",
            "start_date": date(2023, 3, 15),
            "end_date": None,
        },
    ]


def test_api_json_of_cnep(tmp_path: Path) -> None:
    records = [
        {
            "id": 1,
            "dataInicioSancao": "10/05/2022",
            "dataFimSancao": "",
            "tipoSancao": {"descricaoResumida": "Multa", "descricaoPortal": "Multa"},
            "orgaoSancionador": {"nome": "CGU", "siglaUf": "DF"},
            "sancionado": {"nome": "EMPRESA X", "codigoFormatado": "11.222.333/0001-81"},
            "valorMulta": "1000,00",
        }
    ]
    path = tmp_path / "sancoes.json"
    path.write_bytes(orjson.dumps(records))
    frame = read_sanctions(path)

    assert frame.row(0, named=True) == {
        "sanction_list": "CNEP",
        "sanctioned_id": "11222333000181",
        "sanctioned_name": "EMPRESA X",
        "category": "Multa",
        "authority": "CGU",
        "start_date": date(2022, 5, 10),
        "end_date": None,
    }


def test_file_that_is_not_a_sanctions_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a;b\n1;2\n", encoding="utf-8")
    with pytest.raises(SanctionsFormatError, match="CPF OU CNPJ DO SANCIONADO"):
        read_sanctions(path)
