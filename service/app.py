"""The FastAPI application: routes, error handlers, and the scheduler's lifetime."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from ktsweep.service import sweeps as store
from ktsweep.service import web
from ktsweep.service.api.body_size_limit import BodySizeLimit
from ktsweep.service.api.deps import AuthError, ReadAccess, may_read
from ktsweep.service.api.presenters import FastJSONResponse
from ktsweep.service.api.routes import sweeps, trials
from ktsweep.service.api.write_guard import WriteGuard
from ktsweep.service.auth import load_or_create_secret
from ktsweep.service.config import Settings
from ktsweep.service.db import AsyncConnections, make_engine, make_sessions, migrate
from ktsweep.service.leadership import (
    ActiveTerm,
    LeaseLostError,
    SchedulerLease,
    SweepWatcher,
    active_scheduler,
    describe,
    is_shared_database,
    prepared_database,
)
from ktsweep.service.observability import Metrics
from ktsweep.service.report_writer import ReportWriter
from ktsweep.service.scheduler import Scheduler
from ktsweep.service.spec import SpecError
from ktsweep.service.stateless import ApiScheduler

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
SPEC_PARSERS = 2  # specs parsed at once; others wait their turn without holding a thread


class SafeJSONResponse(JSONResponse):
    """JSON by orjson; text it cannot encode (a lone surrogate) is sent back escaped."""

    def render(self, content) -> bytes:
        return FastJSONResponse.render(self, content)


def create_app(
    settings: Settings | None = None,
    executor=None,
    *,
    scheduler: bool = True,
) -> FastAPI:
    """Build the controller app.

    Args:
        settings: Settings; default read from the environment.
        executor: What runs trials; default a `ktsweep.worker.RayTrialExecutor` on
            `settings.ray_address` (a local Ray when unset).
        scheduler: Whether this process also schedules trials (the embedded default of
            `ktsweep serve`). False (`ktsweep serve --no-scheduler`): it serves the API alone,
            straight from the database, and wakes the active scheduler (`ktsweep scheduler`) on
            each write; see `ktsweep.service.stateless`. On PostgreSQL a scheduling app takes
            the scheduler lease (`ktsweep.service.leadership`) and refuses to start while
            another scheduler holds it.
    """
    settings = settings or Settings()
    engine = _make_engine(settings)
    secret = _prepare_database(engine, settings.secret)
    sessions = make_sessions(engine)
    metrics = Metrics(sessions)
    lease = None
    if not scheduler:
        runner = ApiScheduler(sessions, secret, metrics)
    else:
        runner = _make_scheduler(settings, sessions, executor, secret, metrics)
        if is_shared_database(settings.database_url):
            lease = SchedulerLease(settings.database_url)
    connections = AsyncConnections(engine, pool_size=settings.db_pool_size)
    reports = ReportWriter(connections)

    term = None
    if lease is not None:
        term = ActiveTerm(
            lease, SweepWatcher(runner, sessions), settings.scheduler_poll_s, _stop_this_process
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if lease is not None and not lease.try_acquire():
            with sessions() as session:
                other = describe(active_scheduler(session))
            lease.release()
            raise RuntimeError(
                f"another scheduler is active on this database ({other}); start this API "
                "with `ktsweep serve --no-scheduler`, or stop that scheduler first."
            )
        runner.start()
        runner.learn_report_rules()
        if term is not None:
            term.start()
        await connections.open(warm_up=store.warm_up_reads)
        # Everything loaded so far (TensorFlow, Ray, ...) lives as long as the process; left
        # to the collector, each full collection walks it all and stalls every request.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # what this app held can be collected again once it stops
            await reports.close()
            if term is not None:
                term.stop()
            runner.stop()
            if lease is not None:
                lease.release()
            await connections.dispose()
            engine.dispose()

    app = FastAPI(
        title="ktsweep",
        version="0.1.0",
        summary="Hyperparameter sweeps of Keras models on Ray, tracked in W&B.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        docs_url=None,  # served below, sandboxed
        redoc_url=None,
        openapi_url=None,
    )
    role = "scheduler" if scheduler else "api"
    app.state.settings = settings
    app.state.connections = connections
    app.state.sessions = sessions
    app.state.reports = reports
    app.state.sweep_goals = {}  # sweep id -> metric goal, for listing trials by metric
    app.state.scheduler = runner
    app.state.metrics = metrics
    # Specs are parsed on worker threads, a few at a time: a large one never stalls the loop.
    app.state.spec_parsers = anyio.CapacityLimiter(SPEC_PARSERS)
    app.include_router(sweeps.router, prefix=API_PREFIX)
    app.include_router(trials.router, prefix=API_PREFIX)
    app.include_router(web.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """The process is up; which process answered (`role` "scheduler": it serves the API and
        schedules; "api": `ktsweep serve --no-scheduler`), and its `pid`."""
        return {"status": "ok", "role": role, "pid": os.getpid()}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready yet."}})
    def readyz(request: Request):
        """Ready to take sweeps: the database answers and a scheduler is active (here, with
        Ray connected; or the one `ktsweep scheduler` that holds the lease). On PostgreSQL,
        `scheduler` names the active scheduler (`host`, `pid`, `since`). What is not ready,
        and who schedules, is said only to a caller who may read (the status code is for
        probes)."""
        problems = []
        active = None
        try:
            with sessions() as session:
                session.execute(text("SELECT 1"))
                if not scheduler or lease is not None:
                    active = active_scheduler(session)
        except Exception as exc:
            problems.append(f"database: {exc}")
        if scheduler:
            import ray

            if not ray.is_initialized():
                problems.append("ray: not connected")
            if not runner.is_alive:
                problems.append("scheduler: not running")
        elif active is None and not problems:
            problems.append("scheduler: none is active on this database; start `ktsweep scheduler`")
        if problems:
            content: dict[str, Any] = {"status": "not ready"}
            if may_read(request):
                content["problems"] = problems
            return SafeJSONResponse(status_code=503, content=content)
        answer: dict[str, Any] = {"status": "ready"}
        if active is not None and may_read(request):
            answer["scheduler"] = active
        return answer

    @app.get("/metrics", tags=["health"], response_class=Response, dependencies=[ReadAccess])
    def prometheus_metrics():
        """Prometheus metrics: trials by state, scheduling latency, reports, Ray resources. The
        counters are those of every process sharing `PROMETHEUS_MULTIPROC_DIR` (the processes of
        `ktsweep serve --workers N`), whichever answers; see `Metrics`."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(WriteGuard, allowed_origins=settings.origins)
    # Added last, so outermost: a body too large is refused before anything else sees it.
    app.add_middleware(
        BodySizeLimit,
        spec_bytes=settings.max_spec_bytes,
        other_bytes=settings.max_report_bytes,
        spec_path=f"{API_PREFIX}/sweeps",
    )
    _install_error_handlers(app)
    _install_openapi(app)
    _install_docs(app)
    return app


def _make_engine(settings: Settings) -> Engine:
    """The process's (sync) engine, its pool sized by `KTSWEEP_DB_SYNC_POOL_SIZE` and
    `KTSWEEP_DB_SYNC_MAX_OVERFLOW`."""
    return make_engine(
        settings.database_url,
        pool_size=settings.db_sync_pool_size,
        max_overflow=settings.db_sync_max_overflow,
    )


def _prepare_database(engine: Engine, secret: str | None) -> str:
    """Bring the schema up to date and load (or make) the trial-token secret; returns it.

    On PostgreSQL this runs on connections of its own, closed when it returns: the preparation
    lock holds one while the migrations take another, which a small pool could not give."""
    if engine.dialect.name != "postgresql":
        return _migrate_and_load_secret(engine, secret)
    url = engine.url.render_as_string(hide_password=False)
    unpooled = make_engine(url, pooled=False)
    try:
        return _migrate_and_load_secret(unpooled, secret)
    finally:
        unpooled.dispose()


def _migrate_and_load_secret(engine: Engine, secret: str | None) -> str:
    with prepared_database(engine):
        migrate(engine)
        with make_sessions(engine)() as session:
            return load_or_create_secret(session, secret)


def _make_scheduler(settings: Settings, sessions, executor, secret: str, metrics) -> Scheduler:
    if executor is None:
        from ktsweep.worker.ray_runner import RayTrialExecutor

        executor = RayTrialExecutor(settings.ray_address)
    return Scheduler(
        sessions,
        executor,
        api_url=settings.api_url,
        artifact_dir=settings.artifact_dir,
        wandb_mode=settings.wandb_mode,
        secret=secret,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        metrics=metrics,
        checkpoint_every_s=settings.checkpoint_every_s,
        report_every_s=settings.report_every_s,
    )


def _stop_this_process(exc: LeaseLostError) -> None:
    """The lease broke: another scheduler may take over, so this process stops scheduling
    (and serving) now; its supervisor starts it again."""
    os.kill(os.getpid(), signal.SIGTERM)


def create_api_app() -> FastAPI:
    """The API without a scheduler, with settings from the environment: what each process of
    `ktsweep serve --no-scheduler --workers N` serves (uvicorn builds it by this name)."""
    return create_app(scheduler=False)


def run_scheduler(settings: Settings, stopping: threading.Event, executor=None) -> int:
    """`ktsweep scheduler`: stand by until this process holds the scheduler lease, then
    schedule until `stopping` is set. Returns the exit status: 0 when stopped, 1 when the
    lease was lost (another scheduler may be active now).

    The caller has connected Ray (from the main thread)."""
    engine = _make_engine(settings)
    secret = _prepare_database(engine, settings.secret)
    sessions = make_sessions(engine)
    lease = SchedulerLease(settings.database_url)
    said = None
    try:
        while not stopping.is_set():
            try:
                if lease.try_acquire():
                    break
                with sessions() as session:
                    other = describe(active_scheduler(session))
            except Exception as exc:  # the database is down: keep trying, as a standby does
                other = f"unknown: the database cannot be reached ({exc})"
            if other != said:
                log.info("standing by; the active scheduler is %s", other)
                said = other
            stopping.wait(settings.takeover_poll_s)
        if stopping.is_set():
            return 0
        log.info("this process is now the active scheduler: %s", describe(lease.identity))
        runner = _make_scheduler(settings, sessions, executor, secret, Metrics(sessions))
        lost: list[LeaseLostError] = []

        def on_lost(exc: LeaseLostError) -> None:
            lost.append(exc)
            stopping.set()

        term = ActiveTerm(lease, SweepWatcher(runner, sessions), settings.scheduler_poll_s, on_lost)
        runner.start()
        try:
            runner.learn_report_rules()
            term.start()
            while not stopping.wait(1.0):
                pass
        finally:
            term.stop()
            runner.stop()
        return 1 if lost else 0
    finally:
        lease.release()
        engine.dispose()


# Swagger UI and ReDoc load their scripts from a CDN. On the dashboard's origin such a script
# could read the token the dashboard keeps, so the docs pages run sandboxed: an origin of their
# own (opaque), which holds nothing of the dashboard's, and scripts from that CDN alone.
DOCS_POLICY = (
    "sandbox allow-scripts allow-popups allow-forms; default-src 'none'; "
    "script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    "img-src https://fastapi.tiangolo.com data:; font-src https://cdn.jsdelivr.net; "
    "connect-src 'self'"
)


def _install_docs(app: FastAPI) -> None:
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> Response:
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="ktsweep API")
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> Response:
        page = get_redoc_html(openapi_url="/openapi.json", title="ktsweep API")
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema() -> Response:
        # The docs' opaque origin fetches the (public) schema across origins.
        return SafeJSONResponse(app.openapi(), headers={"Access-Control-Allow-Origin": "*"})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpecError)
    async def spec_error(_request: Request, exc: SpecError):
        problems = [{"path": p.path, "msg": p.message} for p in exc.problems]
        return SafeJSONResponse(status_code=422, content={"detail": problems})

    @app.exception_handler(RequestValidationError)
    async def request_error(_request: Request, exc: RequestValidationError):
        problems = [
            {
                "path": ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0]),
                "msg": error["msg"],
            }
            for error in exc.errors()
        ]
        return SafeJSONResponse(status_code=422, content={"detail": problems})

    @app.exception_handler(store.CursorError)
    async def cursor_error(_request: Request, exc: store.CursorError):
        return SafeJSONResponse(
            status_code=422, content={"detail": [{"path": "cursor", "msg": str(exc)}]}
        )

    @app.exception_handler(store.StepOutOfRangeError)
    async def step_error(_request: Request, exc: store.StepOutOfRangeError):
        return SafeJSONResponse(
            status_code=422, content={"detail": [{"path": "step", "msg": str(exc)}]}
        )

    @app.exception_handler(AuthError)
    async def auth_error(_request: Request, exc: AuthError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return SafeJSONResponse(
            status_code=exc.status_code, content={"detail": str(exc)}, headers=headers
        )

    @app.exception_handler(store.NotFoundError)
    async def not_found(_request: Request, exc: store.NotFoundError):
        return SafeJSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(store.ConflictError)
    async def conflict(_request: Request, exc: store.ConflictError):
        return SafeJSONResponse(status_code=409, content={"detail": str(exc)})


def _install_openapi(app: FastAPI) -> None:
    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            spec_schema = dict(sweeps.SPEC_SCHEMA)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec_schema.pop("$defs", {}))
            components["SweepSpec"] = spec_schema
            _drop_unreachable_validation_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _drop_unreachable_validation_errors(schema: dict) -> None:
    """FastAPI documents a 422 for every operation with parameters; keep it only where input
    can actually be invalid (a request body, or query parameters)."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
            if "requestBody" not in operation and not has_query:
                operation.get("responses", {}).pop("422", None)
