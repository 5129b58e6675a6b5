"""Brazilian taxpayer ids: CNPJ (companies, bodies) and CPF (people), check digits and normalisation.

Since July 2026 the Receita Federal also issues alphanumeric CNPJs (12 characters 0-9A-Z, then 2 numeric
check digits); the check-digit rule is the same with each character valued at its ASCII code minus 48, so
numeric CNPJs are a special case of it.
"""

from __future__ import annotations

import re
from typing import Literal

IdKind = Literal["cnpj", "cpf", "other", "empty"]

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
_NOT_DIGIT = re.compile(r"\D")
_CNPJ_SHAPE = re.compile(r"[0-9A-Z]{12}[0-9]{2}")
_CNPJ_WEIGHTS_1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_WEIGHTS_2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)


def digits_only(value: str) -> str:
    """'12.345.678/0001-95' -> '12345678000195'."""
    return _NOT_DIGIT.sub("", value)


def normalise_id(value: str) -> str:
    """Drop punctuation and spaces, upper-case letters (alphanumeric CNPJ); digits stay as they are."""
    return _NOT_ALNUM.sub("", value).upper()


def _cnpj_digit(body: str, weights: tuple[int, ...]) -> int:
    rest = sum((ord(char) - 48) * weight for char, weight in zip(body, weights, strict=True)) % 11
    return 0 if rest < 2 else 11 - rest


def is_valid_cnpj(value: str) -> bool:
    """Check digits of a CNPJ (numeric or alphanumeric), punctuation ignored."""
    cnpj = normalise_id(value)
    if not _CNPJ_SHAPE.fullmatch(cnpj) or cnpj == cnpj[0] * 14:
        return False
    return cnpj_check_digits(cnpj[:12]) == cnpj[12:]


def is_valid_cpf(value: str) -> bool:
    """Check digits of a CPF, repeated digits (111.111.111-11) pass the sum but are void."""
    cpf = digits_only(value)
    if len(cpf) != 11 or cpf == cpf[0] * 11:
        return False
    return cpf_check_digits(cpf[:9]) == cpf[9:]


def cnpj_check_digits(base: str) -> str:
    """The two check digits completing a 12-character CNPJ base (used to make valid synthetic ids)."""
    first = _cnpj_digit(base, _CNPJ_WEIGHTS_1)
    return f"{first}{_cnpj_digit(base + str(first), _CNPJ_WEIGHTS_2)}"


def cpf_check_digits(base: str) -> str:
    """The two check digits completing a 9-digit CPF base."""
    numbers = [int(char) for char in base]
    for size in (9, 10):
        weights = range(size + 1, 1, -1)
        total = sum(number * weight for number, weight in zip(numbers[:size], weights, strict=True))
        numbers.append((total * 10) % 11 % 10)
    return f"{numbers[9]}{numbers[10]}"


def classify_id(ni: str | None) -> tuple[IdKind, bool | None]:
    """What an id (e.g. PNCP niFornecedor) looks like and whether its check digits hold.

    14 characters: CNPJ; 11 digits: CPF; anything else (foreign suppliers, truncated ids): ("other", None),
    since there is nothing to check; blank: ("empty", None).
    """
    if ni is None:
        return "empty", None
    normalised = normalise_id(ni)
    if not normalised:
        return "empty", None
    if len(normalised) == 14:
        return "cnpj", is_valid_cnpj(normalised)
    if len(normalised) == 11 and normalised.isdigit():
        return "cpf", is_valid_cpf(normalised)
    return "other", None
