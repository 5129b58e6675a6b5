"""`cidadao up --demo`: the shipped real sample served by a local PNCP replay, plus synthetic direct awards.

The real sample (89 contratações of 2024-2025, all pregões, and 49 contratos derived from real results) has no
dispensas, so red flags about direct awards would never fire on it. While the demo runs, a few SYNTHETIC
dispensas are published every few seconds, each labelled as such in its object and complementary
information, so a newcomer sees records, findings and alerts flow within a minute. The demo uses its own
database and broker files under ./var/demo/ and starts from scratch each time.
"""

from __future__ import annotations

import random
import shutil
import threading
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from cidadao.domain.ids import cnpj_check_digits
from cidadao.monitor.ingest import PNCP_TZ
from cidadao.sources.replay import ReplayServer
from cidadao.sources.sample import sample_contratacoes, sample_contratos
from cidadao.store.db import engine_for, transaction, upgrade
from cidadao.store.repositories import save_watermark

DEMO_DIR = Path("var") / "demo"
SYNTHETIC_LABEL = "[DADO SINTÉTICO DE DEMONSTRAÇÃO]"
# Fictitious buyers (valid check digits, names that say so): synthetic flags must not name a real body.
_BUYERS = [
    (base + cnpj_check_digits(base), name, uf, city)
    for base, name, uf, city in (
        ("999000010001", "MUNICÍPIO FICTÍCIO DE DEMONSTRAÇÃO", "MA", "Cidade Fictícia"),
        ("999000020001", "PREFEITURA FICTÍCIA DO EXEMPLO", "RS", "Exemplo do Sul"),
    )
]
_OBJECTS = [
    "Aquisição de medicamentos para a farmácia básica",
    "Aquisição de material de limpeza para as escolas municipais",
    "Contratação de serviço de manutenção de veículos da frota",
]


def synthetic_dispensa(number: int, when: datetime, rng: random.Random) -> dict[str, Any]:
    cnpj, name, uf, city = rng.choice(_BUYERS)
    stamp = when.replace(microsecond=0).isoformat()
    # Values around the art. 75, II limit, so that near_limit, over_limit and split_purchase fire.
    value = round(rng.choice([0.55, 0.7, 0.93, 0.97, 1.4]) * 62_725.59, 2)
    return {
        "numeroControlePNCP": f"{cnpj}-1-{900000 + number:06d}/{when.year}",
        "anoCompra": when.year,
        "sequencialCompra": 900000 + number,
        "numeroCompra": f"SINT-{number}",
        "modalidadeId": 8,
        "modalidadeNome": "Dispensa",
        "objetoCompra": f"{SYNTHETIC_LABEL} {rng.choice(_OBJECTS)}",
        "informacaoComplementar": f"{SYNTHETIC_LABEL} Registro gerado pelo modo demonstração do Cidadão.AI.",
        "valorTotalEstimado": value,
        "valorTotalHomologado": value,
        "dataPublicacaoPncp": stamp,
        "dataInclusao": stamp,
        "dataAtualizacao": stamp,
        "situacaoCompraId": 1,
        "amparoLegal": {
            "codigo": 19,
            "nome": "Lei 14.133/2021, Art. 75, II",
            "descricao": "Dispensa por valor",
        },
        "orgaoEntidade": {"cnpj": cnpj, "razaoSocial": name, "esferaId": "M", "poderId": "E"},
        "unidadeOrgao": {
            "ufSigla": uf,
            "codigoUnidade": "1",
            "nomeUnidade": "Secretaria Municipal de Administração",
            "municipioNome": city,
        },
    }


class Demo:
    """Replay server + synthetic publisher; `env` is what the children need to use them."""

    def __init__(self, publish_every: float = 8.0, batch: int = 3, seed: int = 7) -> None:
        self.replay = ReplayServer([*sample_contratacoes(), *sample_contratos()])
        self.publish_every = publish_every
        self.batch = batch
        self.rng = random.Random(seed)
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish_loop, name="demo-publisher", daemon=True)

    def prepare(self) -> dict[str, str]:
        """Fresh demo database (with the watermark at the sample's start) and the children's environment."""
        shutil.rmtree(DEMO_DIR, ignore_errors=True)
        DEMO_DIR.mkdir(parents=True)
        url = f"sqlite:///{DEMO_DIR / 'cidadao.sqlite'}"
        upgrade(url)
        # Start the incremental monitor at the sample's first day, so the first pass fetches it all.
        first = datetime.combine(date(2024, 1, 1), time())
        with transaction(engine_for(url)) as session:
            for endpoint in ("contratacoes", "contratos"):
                save_watermark(session, f"pncp:{endpoint}", first)
        self.replay.start()
        self._thread.start()
        return {
            "DATABASE_URL": url,
            "REDIS_URL": "",
            "EMBEDDED_BROKER_URL": f"sqla+sqlite:///{DEMO_DIR / 'broker.sqlite'}",
            "PNCP_BASE_URL": self.replay.url,
            "PNCP_MODALIDADES": "6,8,9",
            "PNCP_WINDOW_DAYS": "365",
            "PNCP_REQUESTS_PER_SECOND": "50",
            "MONITOR_INTERVAL_SECONDS": "10",
            "POLL_INTERVAL_SECONDS": "5",
            "CONTRACTS_INTERVAL_SECONDS": "20",
            "DISPATCH_INTERVAL_SECONDS": "5",
            "HEARTBEAT_INTERVAL_SECONDS": "30",
            "ALERT_CONSOLE": "true",
            "ALERT_FILE": str(DEMO_DIR / "alerts.jsonl"),
            "ALERT_MIN_SEVERITY": "medium",
        }

    def _publish_loop(self) -> None:
        while not self._stop.wait(self.publish_every):
            now = datetime.now(PNCP_TZ).replace(tzinfo=None)
            records = []
            for _ in range(self.batch):
                self.published += 1
                records.append(synthetic_dispensa(self.published, now - timedelta(seconds=1), self.rng))
            self.replay.publish(records)

    def stop(self) -> None:
        self._stop.set()
        self.replay.stop()
