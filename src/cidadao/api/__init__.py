"""Public HTTP API (FastAPI): `create_app(settings=None)` in `cidadao.api.app`, served by `cidadao serve`.

Routes (OpenAPI at /docs and /openapi.json):
- `/health` and `/health/live` (no I/O), `/health/ready` (503 naming failing checks), `/metrics` (Prometheus);
- `/v1/findings` (filters, keyset cursor, `?format=csv`), `/v1/findings/{id}` (GET; PATCH triage, audited),
  `/v1/records/{numeroControlePNCP}`, `/v1/buyers/{cnpj}`, `/v1/suppliers/{id}`, `/v1/rules`, `/v1/runs`,
  `/v1/runs/jobs`, `/v1/stats`, `POST /v1/investigations` and `GET /v1/investigations/{id}`.

Auth: `Authorization: Bearer <JWT or API key>` or `X-API-Key`; scopes read < write < admin; reads are public
while API_READS_PUBLIC. Limits: RATE_LIMIT_PER_MINUTE per credential, or per IP without one (Redis-shared
when REDIS_URL). Errors: JSON `{error, message, details: [{param, location, message}]}`.
"""
