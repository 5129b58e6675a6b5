"""Synthetic PNCP records at scale: dispensas and inexigibilidades, linked contratos, planted red flags.

Deterministic for a seed. `n` counts every record written (contratações plus contratos). Calibration:
- buyers: the 64 real buyers of the shipped sample (real CNPJs, units, cities) plus synthetic ones with valid
  CNPJs in the sample's cities, the state capitals and generated towns, spheres in the sample's proportions;
- values: log-normal with the spread (sigma of log values) of the real sample; medians per legal basis, and
  dispensas by value kept under the art. 75 limit of their year (limits from `cidadao.redflags.limits`);
- suppliers: by sector of the legal basis, mostly companies (CNPJ); people (CPF) are ~8 %, more among artists,
  lawyers and landlords; ~1 % with a wrong check digit. Dates 2024-01-01 to 2026-10-31 by default.

Planted patterns (`PATTERN_RATES`, share of purchase events; each event is one contratação and its contratos,
or a cluster for patterns that need several): over_limit, near_limit (90-100 % of the limit), split_purchase
(same unit and supplier, each under the limit, summing over it), short_notice (proposal window under 3
business days), amendment_over_25pct, emergency_over_1y, repeat_supplier (3-5 awards in a year), duplicate
(same buyer, object and value within 30 days), year_end_rush (a burst in the last half of December). Pass
`planted` to collect {control number: pattern} as ground truth: the pattern is marked on the record that
carries it (the contratação; the contrato for amendments and long emergencies; every record of a duplicate
pair).
Organic data stays clean of the value patterns: honest dispensas by value end under 90 % of the limit (95 %
after amendments) and honest proposal windows span 8+ days.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any, TypeVar

import orjson

from cidadao.domain.ids import cnpj_check_digits, cpf_check_digits
from cidadao.redflags.limits import limit_for
from cidadao.sources.sample import sample_contratacoes

START = date(2024, 1, 1)
END = date(2026, 10, 31)
PATTERN_RATES: dict[str, float] = {
    "over_limit": 0.004,
    "near_limit": 0.012,
    "split_purchase": 0.003,
    "short_notice": 0.008,
    "amendment_over_25pct": 0.006,
    "emergency_over_1y": 0.003,
    "repeat_supplier": 0.003,
    "duplicate": 0.003,
    "year_end_rush": 0.0005,
}
INVALID_SUPPLIER_ID_RATE = 0.01
SYNTHETIC_SEQUENCE_START = 900_000
Progress = Callable[[int, int], None]

# (PNCP amparoLegal code, article, description, modalidade, share among direct awards, value median)
# Codes follow the domain table "Amparo Legal" of the PNCP consultation manual.
_AMPAROS: tuple[tuple[int, str, str, int, float, float], ...] = (
    (18, "Art. 75, I", "valores inferiores ao limite para obras e serviços de engenharia ou manutenção de "
     "veículos automotores", 8, 0.14, 30_000.0),
    (19, "Art. 75, II", "valores inferiores ao limite, no caso de outros serviços e compras",
     8, 0.46, 12_000.0),
    (20, "Art. 75, III, a", "condições de licitação realizada há menos de 1 ano sem licitantes interessados",
     8, 0.03, 150_000.0),
    (38, "Art. 75, VIII", "nos casos de emergência ou de calamidade pública", 8, 0.07, 250_000.0),
    (6, "Art. 74, I", "materiais, equipamentos, gêneros ou serviços de fornecedor exclusivo",
     9, 0.09, 60_000.0),
    (7, "Art. 74, II", "contratação de profissional do setor artístico", 9, 0.07, 40_000.0),
    (10, "Art. 74, III, c", "assessorias ou consultorias técnicas e auditorias financeiras ou tributárias",
     9, 0.04, 80_000.0),
    (12, "Art. 74, III, e", "patrocínio ou defesa de causas judiciais ou administrativas", 9, 0.02, 90_000.0),
    (13, "Art. 74, III, f", "treinamento e aperfeiçoamento de pessoal", 9, 0.04, 8_000.0),
    (17, "Art. 74, V", "aquisição ou locação de imóvel cujas características tornem necessária sua escolha",
     9, 0.04, 70_000.0),
)  # fmt: skip

# Objects per amparo code: templates with {place}, {item} slots, Portuguese as buyers write them.
_OBJECTS: dict[int, tuple[str, ...]] = {
    18: (
        "Reforma da {place}",
        "Serviços de engenharia para manutenção predial da {place}",
        "Manutenção preventiva e corretiva de veículos da frota municipal",
        "Recuperação da cobertura da {place}",
        "Pavimentação em bloquetes de via urbana próxima à {place}",
    ),
    19: (
        "Aquisição de {item} para a {place}",
        "Aquisição de {item}",
        "Contratação de serviços de manutenção de ar-condicionado da {place}",
        "Fornecimento de {item} para atender a Secretaria Municipal de Saúde",
        "Aquisição de combustível (gasolina e diesel) para os veículos da {place}",
        "Contratação de empresa para fornecimento de lanches para eventos da {place}",
    ),
    20: ("Aquisição de {item} (licitação deserta)", "Contratação de serviços de limpeza da {place}"),
    38: (
        "Contratação emergencial de empresa para coleta de resíduos sólidos urbanos",
        "Aquisição emergencial de {item} para a rede municipal de saúde",
        "Contratação emergencial de transporte escolar",
        "Locação emergencial de ambulâncias para atendimento pré-hospitalar",
    ),
    6: (
        "Aquisição de licença de software de gestão exclusivo",
        "Renovação de assinatura de base de dados jurídica de fornecedor exclusivo",
        "Aquisição de peças de reposição exclusivas do fabricante para equipamento da {place}",
    ),
    7: (
        "Contratação de show artístico para o Aniversário da Cidade",
        "Apresentação artística de banda regional no Carnaval",
        "Contratação de apresentação musical para a Festa do Padroeiro",
    ),
    10: ("Assessoria e consultoria contábil especializada", "Auditoria tributária das contas municipais"),
    12: (
        "Serviços advocatícios especializados em causas tributárias",
        "Defesa judicial em ações trabalhistas",
    ),
    13: (
        "Curso de capacitação em licitações e contratos para servidores",
        "Treinamento de servidores em gestão pública",
    ),
    17: (
        "Locação de imóvel para funcionamento da {place}",
        "Locação de imóvel destinado ao Conselho Tutelar",
    ),
}
_ITEMS = (
    "material de expediente", "medicamentos", "gêneros alimentícios", "material de limpeza",
    "equipamentos de informática", "mobiliário escolar", "pneus", "material hospitalar",
    "uniformes escolares", "material esportivo", "kits de higiene", "insumos odontológicos",
)  # fmt: skip
_PLACES = (
    "Escola Municipal Monteiro Lobato", "Unidade Básica de Saúde Central", "Secretaria Municipal de Educação",
    "Secretaria Municipal de Saúde", "Creche Municipal Pequeno Príncipe", "sede da Prefeitura",
    "Secretaria Municipal de Obras", "Hospital Municipal", "Secretaria de Assistência Social",
    "Biblioteca Pública Municipal", "Câmara Municipal",
)  # fmt: skip
_UNIT_NAMES = (
    "Prefeitura Municipal", "Secretaria Municipal de Saúde", "Secretaria Municipal de Educação",
    "Fundo Municipal de Saúde", "Secretaria Municipal de Obras", "Secretaria Municipal de Administração",
)  # fmt: skip
_CAPITALS = (
    ("São Paulo", "SP", "3550308"), ("Rio de Janeiro", "RJ", "3304557"), ("Belo Horizonte", "MG", "3106200"),
    ("Salvador", "BA", "2927408"), ("Fortaleza", "CE", "2304400"), ("Recife", "PE", "2611606"),
    ("Porto Alegre", "RS", "4314902"), ("Curitiba", "PR", "4106902"), ("Manaus", "AM", "1302603"),
    ("Belém", "PA", "1501402"), ("Goiânia", "GO", "5208707"), ("São Luís", "MA", "2111300"),
    ("Maceió", "AL", "2704302"), ("Natal", "RN", "2408102"), ("Teresina", "PI", "2211001"),
    ("João Pessoa", "PB", "2507507"), ("Aracaju", "SE", "2800308"), ("Cuiabá", "MT", "5103403"),
    ("Campo Grande", "MS", "5002704"), ("Florianópolis", "SC", "4205407"), ("Vitória", "ES", "3205309"),
    ("Porto Velho", "RO", "1100205"), ("Rio Branco", "AC", "1200401"), ("Macapá", "AP", "1600303"),
    ("Boa Vista", "RR", "1400100"), ("Palmas", "TO", "1721000"), ("Brasília", "DF", "5300108"),
)  # fmt: skip
_UF_NAMES = {
    "AC": "Acre", "AL": "Alagoas", "AP": "Amapá", "AM": "Amazonas", "BA": "Bahia", "CE": "Ceará",
    "DF": "Distrito Federal", "ES": "Espírito Santo", "GO": "Goiás", "MA": "Maranhão", "MT": "Mato Grosso",
    "MS": "Mato Grosso do Sul", "MG": "Minas Gerais", "PA": "Pará", "PB": "Paraíba", "PR": "Paraná",
    "PE": "Pernambuco", "PI": "Piauí", "RJ": "Rio de Janeiro", "RN": "Rio Grande do Norte",
    "RS": "Rio Grande do Sul", "RO": "Rondônia", "RR": "Roraima", "SC": "Santa Catarina", "SP": "São Paulo",
    "SE": "Sergipe", "TO": "Tocantins",
}  # fmt: skip
_TOWN_PARTS = (
    ("São José do", "Santa Rita do", "Nova", "Bom Jesus do", "Santo Antônio do", "Serra", "Porto", "Vila"),
    (
        "Norte",
        "Sul",
        "Oeste",
        "Paraíso",
        "Horizonte",
        "Cedro",
        "Ipê",
        "Lago",
        "Campo",
        "Vale",
        "Monte",
        "Rio",
    ),
)
_SURNAMES = (
    "SILVA", "SANTOS", "OLIVEIRA", "SOUZA", "RODRIGUES", "FERREIRA", "ALVES", "PEREIRA", "LIMA", "GOMES",
    "COSTA", "RIBEIRO", "MARTINS", "CARVALHO", "ALMEIDA", "LOPES", "SOARES", "FERNANDES", "VIEIRA", "BARBOSA",
)  # fmt: skip
_FIRST_NAMES = (
    "JOSE", "MARIA", "ANA", "JOAO", "ANTONIO", "FRANCISCO", "CARLOS", "PAULO", "PEDRO", "LUCAS",
    "LUIZ", "MARCOS", "LUIS", "GABRIEL", "RAFAEL", "FRANCISCA", "DANIEL", "MARCELO", "BRUNO", "EDUARDO",
)  # fmt: skip
# Supplier sector per amparo code, and company name forms per sector ({a}, {b}: surnames).
_SECTOR_OF = {18: "obras", 19: "comercio", 20: "comercio", 38: "servicos", 6: "exclusivo", 7: "artistico",
              10: "consultoria", 12: "advocacia", 13: "treinamento", 17: "imoveis"}  # fmt: skip
_SECTOR_FORMS: dict[str, tuple[str, ...]] = {
    "obras": ("CONSTRUTORA {a} LTDA", "{a} ENGENHARIA LTDA", "{a} & {b} SERVICOS E CONSTRUCOES LTDA"),
    "comercio": (
        "{a} & {b} COMERCIO LTDA",
        "{a} DISTRIBUIDORA DE {goods} LTDA",
        "{a} COMERCIO DE {goods} EIRELI",
    ),
    "servicos": (
        "{a} SERVICOS AMBIENTAIS LTDA",
        "{a} TRANSPORTES LTDA",
        "{a} & {b} LOCACAO DE VEICULOS LTDA",
    ),
    "exclusivo": ("{a} TECNOLOGIA LTDA", "{a} SISTEMAS DE GESTAO LTDA", "{a} EDITORA E DISTRIBUIDORA LTDA"),
    "artistico": ("{a} PRODUCOES ARTISTICAS LTDA", "{a} & {b} EVENTOS E SHOWS LTDA"),
    "consultoria": ("{a} ASSESSORIA CONTABIL LTDA", "{a} & {b} CONSULTORIA E AUDITORIA LTDA"),
    "advocacia": ("{a} & {b} ADVOGADOS ASSOCIADOS", "{a} SOCIEDADE INDIVIDUAL DE ADVOCACIA"),
    "treinamento": ("INSTITUTO {a} DE CAPACITACAO LTDA", "{a} CURSOS E TREINAMENTOS LTDA"),
    "imoveis": ("{a} EMPREENDIMENTOS IMOBILIARIOS LTDA", "{a} & {b} ADMINISTRACAO DE IMOVEIS LTDA"),
}
# Share of people (CPF) among suppliers of each sector: artists, lawyers and landlords are often persons.
_PERSON_SHARE = {"artistico": 0.35, "advocacia": 0.3, "imoveis": 0.5}
_GOODS = ("MEDICAMENTOS", "ALIMENTOS", "MATERIAIS", "PRODUTOS HOSPITALARES", "INFORMATICA", "COMBUSTIVEIS")
_SPHERES = (("M", "E"), ("M", "L"), ("E", "E"), ("E", "J"), ("F", "E"), ("F", "J"))
_SPHERE_WEIGHTS = (0.62, 0.04, 0.18, 0.03, 0.11, 0.02)
_USERS = ("Compras.gov.br", "IPM Sistemas", "Elotech Gestão Pública Ltda", "BLL Compras", "Licitanet")


@dataclass(slots=True)
class _Buyer:
    orgao: dict[str, Any]
    units: list[dict[str, Any]]
    sequences: dict[tuple[int, int], int] = field(default_factory=dict)  # (kind 1|2, year) -> last


@dataclass(slots=True)
class _Supplier:
    ni: str
    kind: str  # PJ | PF
    name: str


def _lognormal_sigma() -> float:
    """Spread of log values in the real sample (its pregões), reused for every legal basis."""
    logs = [
        math.log(float(raw["valorTotalEstimado"]))
        for raw in sample_contratacoes()
        if raw.get("valorTotalEstimado")
    ]
    mean = sum(logs) / len(logs)
    return math.sqrt(sum((value - mean) ** 2 for value in logs) / (len(logs) - 1))


class _World:
    """Pools drawn once per run: buyers, units, suppliers, the date axis."""

    def __init__(self, rng: random.Random, n: int, start: date, end: date) -> None:
        self.rng = rng
        self.sigma = _lognormal_sigma()
        self.days = [start + timedelta(days=offset) for offset in range((end - start).days + 1)]
        # Text of every day from `start` on, long enough for contract terms ending years after `end`.
        self.day_text = [
            (start + timedelta(days=offset)).isoformat() for offset in range(len(self.days) + 1200)
        ]
        self.buyers = self._buyers(max(300, min(20_000, n // 150)))
        self.suppliers = self._suppliers(max(3_000, min(200_000, n // 8)))
        amparo_weights = [row[4] for row in _AMPAROS]
        self.amparo_cumulative = [value / sum(amparo_weights) for value in _running_sum(amparo_weights)]

    def _buyers(self, count: int) -> list[_Buyer]:
        rng = self.rng
        buyers: list[_Buyer] = []
        cities: set[tuple[str, str, str]] = set(_CAPITALS)
        for raw in sample_contratacoes():
            # The real buyers, as they are: same CNPJ, name, unit, city.
            unit = dict(raw["unidadeOrgao"])
            cities.add((unit["municipioNome"], unit["ufSigla"], unit["codigoIbge"]))
            if not any(buyer.orgao["cnpj"] == raw["orgaoEntidade"]["cnpj"] for buyer in buyers):
                buyers.append(_Buyer(dict(raw["orgaoEntidade"]), [unit]))
        city_list = sorted(cities)
        capitals = {uf: (name, uf, ibge) for name, uf, ibge in _CAPITALS}
        ufs = sorted(_UF_NAMES)
        used_cnpjs = {buyer.orgao["cnpj"] for buyer in buyers}
        while len(buyers) < count:
            sphere, power = rng.choices(_SPHERES, _SPHERE_WEIGHTS)[0]
            if sphere != "M":  # state and federal bodies sit in the capital
                name, uf, ibge = capitals[ufs[rng.randrange(len(ufs))]]
            elif rng.random() < 0.5:
                name, uf, ibge = city_list[rng.randrange(len(city_list))]
            else:
                uf = ufs[rng.randrange(len(ufs))]
                name = f"{rng.choice(_TOWN_PARTS[0])} {rng.choice(_TOWN_PARTS[1])}"
                ibge = f"{_UF_CODES[uf]}{rng.randrange(10_000, 99_999)}"
            cnpj = _cnpj(rng, "0001")
            if cnpj in used_cnpjs:
                continue
            used_cnpjs.add(cnpj)
            org_name, unit_names = _body_names(sphere, power, name, uf)
            orgao = {"cnpj": cnpj, "razaoSocial": org_name, "poderId": power, "esferaId": sphere}
            units = [
                {
                    "ufNome": _UF_NAMES[uf],
                    "codigoUnidade": str(rng.randrange(1, 999_999)),
                    "nomeUnidade": unit_names[index % len(unit_names)],
                    "ufSigla": uf,
                    "municipioNome": name,
                    "codigoIbge": ibge,
                }
                for index in range(1 + int(rng.random() * 3.5))
            ]
            buyers.append(_Buyer(orgao, units))
        return buyers

    def _suppliers(self, count: int) -> dict[str, list[_Supplier]]:
        """Suppliers by sector, ~1 % with a wrong check digit; sector sizes follow the amparo shares."""
        rng = self.rng
        shares: dict[str, float] = {}
        for row in _AMPAROS:
            shares[_SECTOR_OF[row[0]]] = shares.get(_SECTOR_OF[row[0]], 0.0) + row[4]
        pools: dict[str, list[_Supplier]] = {}
        for sector, share in sorted(shares.items()):
            pool = pools[sector] = []
            forms = _SECTOR_FORMS[sector]
            for _ in range(max(300, int(count * share))):
                if rng.random() < _PERSON_SHARE.get(sector, 0.08):
                    name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_SURNAMES)} {rng.choice(_SURNAMES)}"
                    base = f"{rng.randrange(10**8, 10**9):09d}"
                    ni, kind = base + cpf_check_digits(base), "PF"
                else:
                    first, second = rng.sample(_SURNAMES, 2)
                    name = rng.choice(forms).format(a=first, b=second, goods=rng.choice(_GOODS))
                    ni, kind = _cnpj(rng, f"{rng.randrange(1, 10):04d}"), "PJ"
                if rng.random() < INVALID_SUPPLIER_ID_RATE:
                    ni = ni[:-1] + str((int(ni[-1]) + 1 + rng.randrange(9)) % 10)  # a typo in the check digit
                pool.append(_Supplier(ni, kind, name))
        return pools


_UF_CODES = {
    "RO": 11, "AC": 12, "AM": 13, "RR": 14, "PA": 15, "AP": 16, "TO": 17, "MA": 21, "PI": 22, "CE": 23,
    "RN": 24, "PB": 25, "PE": 26, "AL": 27, "SE": 28, "BA": 29, "MG": 31, "ES": 32, "RJ": 33, "SP": 35,
    "PR": 41, "SC": 42, "RS": 43, "MS": 50, "MT": 51, "GO": 52, "DF": 53,
}  # fmt: skip


def _upper_ascii(text: str) -> str:
    """PNCP's razaoSocial style: upper case without accents."""
    return unicodedata.normalize("NFD", text).encode("ascii", "ignore").decode().upper()


def _body_names(sphere: str, power: str, city: str, uf: str) -> tuple[str, tuple[str, ...]]:
    """razaoSocial of a public body and the names of its units."""
    state = _UF_NAMES[uf]
    if sphere == "M":
        if power == "L":
            return f"CAMARA MUNICIPAL DE {_upper_ascii(city)}", ("Câmara Municipal",)
        return f"MUNICIPIO DE {_upper_ascii(city)}", _UNIT_NAMES
    if sphere == "E":
        if power == "J":
            return f"TRIBUNAL DE JUSTICA DO ESTADO - {uf}", (
                "Tribunal de Justiça",
                "Fundo de Reaparelhamento",
            )
        return f"ESTADO - {_upper_ascii(state)}", (
            "Secretaria de Estado da Saúde",
            "Secretaria de Estado da Educação",
        )
    if power == "J":
        return f"JUSTICA FEDERAL DE PRIMEIRO GRAU - {uf}", (f"Seção Judiciária de {state}",)
    return f"INSTITUTO FEDERAL DE {_upper_ascii(state)}", ("Reitoria", f"Campus {city}")


def _cnpj(rng: random.Random, branch: str) -> str:
    base = f"{rng.randrange(10**7, 10**8):08d}{branch}"
    return base + cnpj_check_digits(base)


# PNCP categoriaProcesso by amparo: what kind of process each legal basis usually is.
_CATEGORY = {
    18: {"id": 9, "nome": "Serviços de Engenharia"},
    17: {"id": 5, "nome": "Locação Imóveis"},
    19: {"id": 2, "nome": "Compras"},
    6: {"id": 2, "nome": "Compras"},
}
_SERVICES = {"id": 8, "nome": "Serviços"}
_INITIAL_CONTRACT = {"id": 1, "nome": "Contrato (termo inicial)"}
_BY_VALUE = {18: "I", 19: "II"}  # dispensas by value and their inciso (limit)
_Event = list[tuple[dict[str, Any], str | None]]
_T = TypeVar("_T")
_SPREAD_STEPS = 8192
# Office-hours clock times, formatted once.
_TIMES = tuple(
    f"{hour:02d}:{minute:02d}:{second:02d}"
    for hour in range(8, 19)
    for minute in range(60)
    for second in range(60)
)
_TIMES_FROM_9 = _TIMES[3600:]


class _Generator:
    def __init__(self, n: int, seed: int, start: date, end: date) -> None:
        self.rng = random.Random(seed)
        self._random = self.rng.random
        self.world = _World(self.rng, n, start, end)
        # exp(sigma * z) at evenly spaced normal quantiles: one random() per log-normal draw instead of gauss.
        # Values spread a little narrower (0.75 sigma) than the sample's pregões: direct awards vary less.
        normal, scale = NormalDist(), self.world.sigma * 0.75
        self._spread = [
            math.exp(scale * normal.inv_cdf((step + 0.5) / _SPREAD_STEPS)) for step in range(_SPREAD_STEPS)
        ]
        self.amparos = {row[0]: row for row in _AMPAROS}
        self.amparo_json = {
            row[0]: {"descricao": row[2], "nome": f"Lei 14.133/2021, {row[1]}", "codigo": row[0]}
            for row in _AMPAROS
        }
        self.limits: dict[tuple[int, str], float] = {}
        names = list(PATTERN_RATES)
        self.patterns = list(zip(_running_sum([PATTERN_RATES[name] for name in names]), names, strict=True))

    # --- building blocks -------------------------------------------------------------------------------

    def _int(self, low: int, high: int | None = None) -> int:
        """randrange(low, high) from one random() call: several times cheaper, same distribution."""
        if high is None:
            low, high = 0, low
        return low + int(self._random() * (high - low))

    def _pick(self, items: Sequence[_T]) -> _T:
        return items[int(self._random() * len(items))]

    def _limit(self, year: int, inciso: str) -> float:
        key = (year, inciso)
        if key not in self.limits:
            # Years outside the decree table reuse the latest known limit rather than having none.
            self.limits[key] = limit_for(year, "I" if inciso == "I" else "II") or limit_for(2026, "II") or 0.0
        return self.limits[key]

    def _day(self) -> int:
        return self._int(len(self.world.days))

    def _value(self, code: int, year: int) -> float:
        median = self.amparos[code][5]
        value = median * self._spread[int(self._random() * _SPREAD_STEPS)]
        inciso = _BY_VALUE.get(code)
        if inciso is not None:
            limit = self._limit(year, inciso)
            if value >= 0.9 * limit:  # honest dispensas stay clear of the threshold
                value = limit * self.rng.uniform(0.02, 0.88)
        return round(min(max(value, 50.0), 40_000_000.0), 2)

    def _amparo(self) -> int:
        roll = self.rng.random()
        for threshold, row in zip(self.world.amparo_cumulative, _AMPAROS, strict=True):
            if roll <= threshold:
                return row[0]
        return _AMPAROS[-1][0]

    def _object(self, code: int) -> str:
        return self._pick(_OBJECTS[code]).format(place=self._pick(_PLACES), item=self._pick(_ITEMS))

    def _time(self, day: int, hour_from: int = 8) -> str:
        times = _TIMES_FROM_9 if hour_from == 9 else _TIMES
        return f"{self.world.day_text[day]}T{times[int(self._random() * len(times))]}"

    def _sequence(self, buyer: _Buyer, kind: int, year: int) -> int:
        # Synthetic sequences start far above real ones so a generated record never replaces a real record
        # of the same buyer (the buyers are calibrated on the real sample).
        key = (kind, year)
        buyer.sequences[key] = sequence = buyer.sequences.get(key, SYNTHETIC_SEQUENCE_START - 1) + 1
        return sequence

    def _purchase(
        self,
        buyer: _Buyer,
        unit: dict[str, Any],
        code: int,
        day: int,
        value: float,
        text: str,
        notice_days: int | None = None,
        homologated: float | None = None,
    ) -> dict[str, Any]:
        rng = self.rng
        year = self.world.days[day].year
        sequence = self._sequence(buyer, 1, year)
        published = self._time(day)
        row = self.amparos[code]
        modalidade = row[3]
        with_notice = (
            modalidade == 8 and code in _BY_VALUE and (notice_days is not None or rng.random() < 0.7)
        )
        if with_notice:
            # The closing day may fall after the range's end: day_text runs on past it.
            close_day = day + (notice_days if notice_days is not None else self._int(8, 16))
            opening, closing = (
                published,
                self._time(close_day, 9) if close_day > day else published[:11] + "18:00:00",
            )
            instrument, dispute = (2, "Aviso de Contratação Direta"), (4, "Dispensa Com Disputa")
        else:
            opening, closing = None, None
            instrument, dispute = (3, "Ato que autoriza a Contratação Direta"), (5, "Não se aplica")
        return {
            "dataInclusao": published,
            "numeroCompra": f"{sequence}/{year}",
            "dataPublicacaoPncp": published,
            "dataAtualizacao": published,
            "srp": False,
            "anoCompra": year,
            "sequencialCompra": sequence,
            "dataAberturaProposta": opening,
            "dataEncerramentoProposta": closing,
            "informacaoComplementar": "",
            "processo": f"{self._int(100, 99_999)}/{year}",
            "objetoCompra": text,
            "linkSistemaOrigem": None,
            "justificativaPresencial": None,
            "valorTotalHomologado": (
                homologated if homologated is not None else round(value * rng.uniform(0.9, 1.0), 2)
            ),
            "numeroControlePNCP": f"{buyer.orgao['cnpj']}-1-{sequence:06d}/{year}",
            "modalidadeId": modalidade,
            "dataAtualizacaoGlobal": published,
            "modoDisputaId": dispute[0],
            "linkProcessoEletronico": None,
            "valorTotalEstimado": value,
            "modalidadeNome": "Dispensa" if modalidade == 8 else "Inexigibilidade",
            "modoDisputaNome": dispute[1],
            "situacaoCompraId": 1,
            "situacaoCompraNome": "Divulgada no PNCP",
            "usuarioNome": _USERS[self._int(len(_USERS))],
            "tipoInstrumentoConvocatorioNome": instrument[1],
            "tipoInstrumentoConvocatorioCodigo": instrument[0],
            "orgaoEntidade": buyer.orgao,
            "unidadeOrgao": unit,
            "amparoLegal": self.amparo_json[code],
            "unidadeSubRogada": None,
            "orgaoSubRogado": None,
        }

    def _contract(
        self,
        buyer: _Buyer,
        purchase: dict[str, Any],
        day: int,
        supplier: _Supplier,
        value: float,
        growth: float = 0.0,
        term_days: int | None = None,
    ) -> dict[str, Any]:
        last = len(self.world.days) - 1
        signed = min(day + self._int(1, 21), last)
        published_day = min(signed + self._int(0, 6), last)
        year = self.world.days[signed].year
        sequence = self._sequence(buyer, 2, year)
        code = purchase["amparoLegal"]["codigo"]
        if term_days is None:
            term_days = self._int(90, 361) if code == 38 else self._int(120, 366)
        signed_text = self.world.day_text[signed]
        published = self._time(published_day)
        value_global = round(value * (1 + growth), 2)
        return {
            "numeroControlePNCP": f"{buyer.orgao['cnpj']}-2-{sequence:06d}/{year}",
            "numeroControlePncpCompra": purchase["numeroControlePNCP"],
            "anoContrato": year,
            "sequencialContrato": sequence,
            "numeroContratoEmpenho": f"{sequence:03d}/{year}",
            "processo": purchase["processo"],
            "tipoContrato": _INITIAL_CONTRACT,
            "categoriaProcesso": _CATEGORY.get(code, _SERVICES),
            "receita": False,
            "objetoContrato": purchase["objetoCompra"],
            "informacaoComplementar": None,
            "orgaoEntidade": buyer.orgao,
            "unidadeOrgao": purchase["unidadeOrgao"],
            "orgaoSubRogado": None,
            "unidadeSubRogada": None,
            "tipoPessoa": supplier.kind,
            "niFornecedor": supplier.ni,
            "nomeRazaoSocialFornecedor": supplier.name,
            "valorInicial": value,
            "numeroParcelas": 1,
            "valorParcela": value,
            "valorGlobal": value_global,
            "valorAcumulado": 0,
            "dataAssinatura": signed_text,
            "dataVigenciaInicio": signed_text,
            "dataVigenciaFim": self.world.day_text[signed + term_days],
            "numeroRetificacao": 0,
            "usuarioNome": purchase["usuarioNome"],
            "dataPublicacaoPncp": published,
            "dataAtualizacao": published,
        }

    def _supplier(self, code: int) -> _Supplier:
        return self._pick(self.world.suppliers[_SECTOR_OF[code]])

    def _buyer(self) -> tuple[_Buyer, dict[str, Any]]:
        buyers = self.world.buyers
        buyer = buyers[self._int(len(buyers))]
        return buyer, buyer.units[self._int(len(buyer.units))]

    # --- events -----------------------------------------------------------------------------------------

    def events(self) -> Iterator[_Event]:
        rng = self.rng
        handlers: dict[str, Callable[[], _Event]] = {
            "split_purchase": self._split,
            "repeat_supplier": self._repeat,
            "duplicate": self._duplicate,
            "year_end_rush": self._year_end_rush,
        }
        planted_share = self.patterns[-1][0]
        while True:
            roll = rng.random()
            if roll >= planted_share:  # most events plant nothing: skip the search
                yield self._single(None)
                continue
            pattern = next(name for threshold, name in self.patterns if roll < threshold)
            if pattern in handlers:
                yield handlers[pattern]()
            else:
                yield self._single(pattern)

    def _single(self, pattern: str | None) -> _Event:
        """One purchase and its contratos; `pattern` is marked on the record that carries it."""
        rng = self.rng
        buyer, unit = self._buyer()
        day = self._day()
        year = self.world.days[day].year
        notice: int | None = None
        homologated: float | None = None
        if pattern in ("over_limit", "near_limit", "short_notice"):
            code = 19 if rng.random() < 0.75 else 18
        elif pattern == "emergency_over_1y":
            code = 38
        elif pattern == "amendment_over_25pct":
            code = self._pick((38, 6, 10, 17, 20))  # not by value: the amendment alone is the anomaly
        else:
            code = self._amparo()
        value = self._value(code, year)
        if pattern == "over_limit":
            value = homologated = round(self._limit(year, _BY_VALUE[code]) * rng.uniform(1.02, 2.5), 2)
        elif pattern == "near_limit":
            value = homologated = round(self._limit(year, _BY_VALUE[code]) * rng.uniform(0.9, 0.999), 2)
        elif pattern == "short_notice":
            notice = self._int(0, 2)
        purchase = self._purchase(buyer, unit, code, day, value, self._object(code), notice, homologated)
        on_contract = pattern in ("amendment_over_25pct", "emergency_over_1y")
        limit = self._limit(year, _BY_VALUE[code]) if code in _BY_VALUE else None
        event: _Event = [(purchase, None if on_contract else pattern)]
        contracts = 1 if on_contract else 0 if rng.random() < 0.1 else 1 if rng.random() < 0.89 else 2
        # Honest amendments of a dispensa by value keep the contract under 95 % of the limit.
        ceiling = 0.95 * limit if limit is not None else None
        for _ in range(contracts):
            share = round(value / contracts, 2)
            growth, term = 0.0, None
            if pattern == "amendment_over_25pct":
                growth = rng.uniform(0.55, 1.2)
            elif pattern == "emergency_over_1y":
                term = self._int(400, 900)
            elif rng.random() < 0.15:
                growth = rng.uniform(0.01, 0.2)
                if ceiling is not None and pattern != "over_limit":
                    growth = max(0.0, min(growth, ceiling / share - 1))
            contract = self._contract(buyer, purchase, day, self._supplier(code), share, growth, term)
            event.append((contract, pattern if on_contract else None))
        return event

    def _awards(
        self,
        buyer: _Buyer,
        unit: dict[str, Any],
        supplier: _Supplier,
        days: list[int],
        codes: list[int],
        values: list[float],
        texts: list[str],
        pattern: str,
        on_contracts: bool = False,
    ) -> _Event:
        """Purchases each with one contrato to the same supplier; purchases (and contratos) get `pattern`."""
        event: _Event = []
        for day, code, value, text in zip(days, codes, values, texts, strict=True):
            purchase = self._purchase(buyer, unit, code, day, value, text)
            event.append((purchase, pattern))
            contract = self._contract(buyer, purchase, day, supplier, value)
            event.append((contract, pattern if on_contracts else None))
        return event

    def _days_near(self, count: int, spread: int) -> list[int]:
        """`count` sorted days within `spread` days, all in one calendar year."""
        days = self.world.days
        first = self._int(max(1, len(days) - spread))
        candidates = [min(first + self._int(spread), len(days) - 1) for _ in range(count)]
        return sorted(day if days[day].year == days[first].year else first for day in candidates)

    def _split(self) -> _Event:
        rng = self.rng
        buyer, unit = self._buyer()
        count = self._int(3, 5)
        days = self._days_near(count, 60)
        year = self.world.days[days[0]].year
        limit = self._limit(year, "II")
        values = [round(limit * rng.uniform(0.36, 0.6), 2) for _ in days]
        item = self._pick(_ITEMS)
        texts = [f"Aquisição de {item} para a {self._pick(_PLACES)}" for _ in days]
        return self._awards(
            buyer, unit, self._supplier(19), days, [19] * count, values, texts, "split_purchase"
        )

    def _repeat(self) -> _Event:
        buyer, unit = self._buyer()
        count = self._int(3, 6)
        days = self._days_near(count, 300)
        codes = [self._pick((19, 6, 10, 13))] * count
        values = [self._value(code, self.world.days[day].year) for code, day in zip(codes, days, strict=True)]
        texts = [self._object(code) for code in codes]
        return self._awards(
            buyer, unit, self._supplier(codes[0]), days, codes, values, texts, "repeat_supplier"
        )

    def _duplicate(self) -> _Event:
        rng = self.rng
        buyer, unit = self._buyer()
        days = self._days_near(2, 25)
        code = self._pick((19, 6, 18))
        value = self._value(code, self.world.days[days[0]].year)
        values = [value, round(value * rng.uniform(0.997, 1.003), 2)]
        text = self._object(code)
        return self._awards(
            buyer, unit, self._supplier(code), days, [code, code], values, [text, text], "duplicate", True
        )

    def _year_end_rush(self) -> _Event:
        buyer, unit = self._buyer()
        decembers = [index for index, day in enumerate(self.world.days) if day.month == 12 and day.day >= 17]
        if not decembers:
            return self._single(None)
        year = self.world.days[self._pick(decembers)].year
        days = sorted(
            self._pick([d for d in decembers if self.world.days[d].year == year])
            for _ in range(self._int(8, 15))
        )
        event: _Event = []
        for day in days:
            code = self._pick((19, 19, 18, 6))
            value = self._value(code, year)
            purchase = self._purchase(buyer, unit, code, day, value, self._object(code))
            event.append((purchase, "year_end_rush"))
            event.append((self._contract(buyer, purchase, day, self._supplier(code), value), None))
        return event


def _running_sum(values: list[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


def generate(
    n: int,
    seed: int = 0,
    *,
    start: date = START,
    end: date = END,
    planted: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """`n` PNCP-shaped records (contratações, each followed by its contratos), deterministic for `seed`.

    Records share nested objects (orgaoEntidade, unidadeOrgao) with each other: serialise them, don't mutate.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    if n == 0:
        return
    produced = 0
    for event in _Generator(n, seed, start, end).events():
        for record, pattern in event:
            if pattern is not None and planted is not None:
                planted[record["numeroControlePNCP"]] = pattern
            yield record
            produced += 1
            if produced >= n:
                return


def write_jsonl(
    path: str | Path,
    n: int,
    seed: int = 0,
    *,
    progress: Progress | None = None,
    planted: dict[str, str] | None = None,
    every: int = 10_000,
    start: date = START,
    end: date = END,
) -> int:
    """Write `n` generated records as JSON Lines; `progress(done, n)` every `every` records. Returns n."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dumps = orjson.dumps
    done = 0
    with path.open("wb") as out:
        batch: list[bytes] = []
        for record in generate(n, seed, start=start, end=end, planted=planted):
            batch.append(dumps(record))
            done += 1
            if len(batch) == every:
                batch.append(b"")
                out.write(b"\n".join(batch))
                batch.clear()
                if progress:
                    progress(done, n)
        if batch:
            batch.append(b"")
            out.write(b"\n".join(batch))
    if progress:
        progress(done, n)
    return done
