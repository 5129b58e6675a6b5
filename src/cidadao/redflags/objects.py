"""Object classes of purchases, derived from the free text `objetoCompra` / `objetoContrato`.

Method: the text is lower-cased and stripped of accents (NFD, combining marks removed) and cut before the
beneficiary ("... para atender a Secretaria Municipal de Saúde", "... da Escola Municipal"), which names who
receives the purchase, not what is bought; then keyword rules, tried in the order of OBJECT_RULES, assign
the first class whose pattern matches, else "outros". The order
resolves overlaps on purpose: "combustível para veículos" is combustível, "medicamentos hospitalares" is
medicamentos, "reforma do posto de saúde" is obras_engenharia. Classification runs once per distinct text, so
frames with repeated objects cost little.

It is a coarse, transparent grouping for peer comparison (split purchases, outliers, heterogeneity), not a
catalogue classification (CATMAT/CATSER codes are not in the PNCP contracting records).
"""

from __future__ import annotations

import polars as pl

OTHER = "outros"

# (class, regex over normalised text). First match wins.
OBJECT_RULES: tuple[tuple[str, str], ...] = (
    ("combustivel", r"combustive|gasolina|diesel|etanol|lubrificante|\bglp\b|gas de cozinha"),
    (
        "veiculos",
        r"veiculo|automove|automotiv|pneu|frota|\bonibus\b|caminhao|caminhoes|motocicleta|ambulancia|"
        r"oficina mecanica|pecas mecanicas",
    ),
    (
        "obras_engenharia",
        r"\bobras?\b|reforma|construcao|pavimenta|engenharia|edificac|drenagem|recapeamento|"
        r"\bponte\b|terraplenagem|alvenaria|ampliacao d",
    ),
    ("medicamentos", r"medicament|farmac|remedio|\bvacina|soro fisiologico|insulina"),
    (
        "servicos_saude",
        r"\bexames?\b|consultas? medica|hospital|plantao|plantoes|atendimento medico|laborator|"
        r"odontolog|fisioterap|cirurgi|hemodialise|\bclinica",
    ),
    (
        "alimentacao",
        r"aliment|merenda|refeic|\blanches?\b|marmit|hortifruti|carnes?\b|\bpaes?\b|cafe da manha|"
        r"buffet|coffee",
    ),
    (
        "ti",
        r"software|informatica|computador|notebook|\bsistemas? de|licenc|tecnologia da informacao|"
        r"impressora|internet|\bsite\b|hospedagem|nuvem|\bredes? de dados|suprimentos de informatica",
    ),
    ("consultoria", r"consultori|assessori|auditori|pareceres?|capacitacao|treinamento"),
    ("eventos", r"\beventos?\b|\bshows?\b|festivi|festa|palco|apresentacao artistica|carnaval|artistic"),
    ("limpeza", r"limpeza|higieniz|conservacao predial|dedetiz|sanitizacao|coleta de lixo|residuos"),
)
# Where the beneficiary starts: "para (atender) a/o ...", "da Secretaria ...", "do Hospital ...", etc.
BENEFICIARY = (
    r"\s(para (atender|atendimento d|uso d)?\s?(a|o|as|os|ao|aos)\s|"
    r"d[aoe]s? (secretaria|hospital|unidade|escola|creche|camara|biblioteca|sede|prefeitura|municipio|rede "
    r"municipal|posto|fundo municipal)\b).*$"
)
OBJECT_CLASSES: tuple[str, ...] = (*(name for name, _ in OBJECT_RULES), OTHER)


def normalise_text(expr: pl.Expr) -> pl.Expr:
    """Lower-case, accents removed, whitespace collapsed: the form keyword rules and duplicates compare."""
    return (
        expr.str.to_lowercase()
        .str.normalize("NFD")
        .str.replace_all(r"\p{Mn}", "")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def classify(expr: pl.Expr) -> pl.Expr:
    """Object class of each text (null text gives null)."""
    full = normalise_text(expr)
    subject = full.str.replace(BENEFICIARY, "")
    text = pl.when(subject.str.len_chars() > 0).then(subject).otherwise(full)
    result: pl.Expr = pl.lit(OTHER)
    for name, pattern in reversed(OBJECT_RULES):
        result = pl.when(text.str.contains(pattern)).then(pl.lit(name)).otherwise(result)
    return pl.when(expr.is_null()).then(None).otherwise(result)


def with_distinct(frame: pl.DataFrame, inputs: list[str], expr: pl.Expr, name: str) -> pl.DataFrame:
    """`frame` plus column `name` = `expr` of `inputs`, evaluated once per distinct combination of them.

    Text work (regexes, accent folding) over a million rows costs seconds; over their few thousand
    distinct values it costs milliseconds.
    """
    keys = frame.select(inputs)
    distinct = keys.unique().with_columns(expr.alias(name))
    # Join only the key columns and attach the result: joining `frame` itself would copy every column.
    values = keys.join(distinct, on=inputs, how="left", nulls_equal=True, maintain_order="left")[name]
    return frame.with_columns(values)


def with_object_class(frame: pl.DataFrame, column: str = "object") -> pl.DataFrame:
    """`frame` plus an `object_class` column (kept if already there)."""
    if "object_class" in frame.columns:
        return frame
    return with_distinct(frame, [column], classify(pl.col(column)), "object_class")
