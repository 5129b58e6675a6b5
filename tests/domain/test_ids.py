from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cidadao.domain.ids import (
    classify_id,
    cnpj_check_digits,
    cpf_check_digits,
    digits_only,
    is_valid_cnpj,
    is_valid_cpf,
    normalise_id,
)


@pytest.mark.parametrize(
    "cnpj",
    [
        "06140404000167",  # Município de Fortuna (MA), from the real sample
        "00.394.460/0058-87",  # Ministério da Fazenda, punctuated
        "12ABC34501DE35",  # alphanumeric example published by the Receita Federal
    ],
)
def test_real_cnpjs_are_valid(cnpj: str) -> None:
    assert is_valid_cnpj(cnpj)


@pytest.mark.parametrize("cnpj", ["06140404000168", "00000000000000", "0614040400016", "12ABC34501DE36", ""])
def test_bad_cnpjs_are_invalid(cnpj: str) -> None:
    assert not is_valid_cnpj(cnpj)


@pytest.mark.parametrize("cpf", ["529.982.247-25", "11144477735"])
def test_valid_cpfs(cpf: str) -> None:
    assert is_valid_cpf(cpf)


@pytest.mark.parametrize("cpf", ["52998224724", "11111111111", "1114447773", "abc"])
def test_invalid_cpfs(cpf: str) -> None:
    assert not is_valid_cpf(cpf)


def test_normalisation() -> None:
    assert digits_only("12.345.678/0001-95") == "12345678000195"
    assert normalise_id(" 12.abc.345/01de-35 ") == "12ABC34501DE35"


@pytest.mark.parametrize(
    ("ni", "expected"),
    [
        ("06140404000167", ("cnpj", True)),
        ("06140404000160", ("cnpj", False)),
        ("529.982.247-25", ("cpf", True)),
        ("52998224700", ("cpf", False)),
        ("PT123456789", ("other", None)),
        ("", ("empty", None)),
        (None, ("empty", None)),
    ],
)
def test_classify_id(ni: str | None, expected: tuple[str, bool | None]) -> None:
    assert classify_id(ni) == expected


@given(st.text("0123456789", min_size=12, max_size=12).filter(lambda base: len(set(base)) > 1))
def test_completed_cnpj_bases_validate_and_any_changed_check_digit_fails(base: str) -> None:
    digits = cnpj_check_digits(base)
    assert is_valid_cnpj(base + digits)
    wrong = str((int(digits[1]) + 1) % 10)
    assert not is_valid_cnpj(base + digits[0] + wrong)


@given(st.text("0123456789", min_size=9, max_size=9).filter(lambda base: len(set(base)) > 1))
def test_completed_cpf_bases_validate(base: str) -> None:
    digits = cpf_check_digits(base)
    assert is_valid_cpf(base + digits)
    assert not is_valid_cpf(base + digits[0] + str((int(digits[1]) + 1) % 10))
