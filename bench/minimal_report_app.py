"""The least an API can do for a worker's report: the baseline `bench/api_load.py` measures
ktsweep against.

One FastAPI route, `POST /api/v1/trials/{trial_id}/reports`, that checks the bearer token and
upserts one row into ktsweep's `trial_reports` table through psycopg's asyncio driver (the
driver ktsweep uses), on a fixed set of autocommitted connections; it answers `continue`. No
trial lookup, no state check, no early-termination rule, no group commit: what is left is the
framework, the server and one round trip to PostgreSQL. Served by stock uvicorn:

    MINIMAL_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/DB MINIMAL_TOKEN=... \\
        python -m uvicorn minimal_report_app:app --app-dir bench --workers 2 --no-access-log

Settings (environment): MINIMAL_DATABASE_URL (a libpq URL of a database with ktsweep's
schema; required), MINIMAL_TOKEN (the bearer token clients send; required),
MINIMAL_POOL_SIZE (connections per process, default 10).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

UPSERT = (
    "INSERT INTO trial_reports (trial_id, step, metrics, created_at) "
    "VALUES (%s, %s, CAST(%s AS json), now()) "
    "ON CONFLICT (trial_id, step) DO UPDATE SET metrics = excluded.metrics"
)


class Report(BaseModel):
    step: int
    metrics: dict[str, float | None]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the process's connections before it serves, close them after."""
    pool: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
    for _ in range(int(os.environ.get("MINIMAL_POOL_SIZE", "10"))):
        connection = await psycopg.AsyncConnection.connect(
            os.environ["MINIMAL_DATABASE_URL"], autocommit=True
        )
        pool.put_nowait(connection)
    app.state.pool = pool
    app.state.authorization = f"Bearer {os.environ['MINIMAL_TOKEN']}"
    try:
        yield
    finally:
        while not pool.empty():
            await pool.get_nowait().close()


app = FastAPI(lifespan=lifespan)


@app.post("/api/v1/trials/{trial_id}/reports")
async def report(trial_id: str, report: Report, authorization: str = Header("")) -> dict:
    """Store one report (one upserted row) and say `continue`."""
    if not hmac.compare_digest(authorization, app.state.authorization):
        raise HTTPException(401, "send the benchmark's token: Authorization: Bearer <token>")
    connection = await app.state.pool.get()
    try:
        await connection.execute(UPSERT, (trial_id, report.step, json.dumps(report.metrics)))
    finally:
        app.state.pool.put_nowait(connection)
    return {"action": "continue"}
