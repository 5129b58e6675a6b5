"""Where records come from: the PNCP consulta API (`pncp`), files (`files`), validation into typed records
(`pncp_schema`), the shipped real sample (`sample`), a local PNCP replay (`replay`) and synthetic data
(`generator`)."""
