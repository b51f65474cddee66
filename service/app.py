"""The FastAPI application: routes, error handlers, and the scheduler's lifetime."""

from __future__ import annotations

import gc
import os
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

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
from ktsweep.service.observability import Metrics, ReportCount
from ktsweep.service.processes import (
    FollowerScheduler,
    ForwardToLeader,
    LeaderLink,
    add_internal_routes,
)
from ktsweep.service.report_writer import ReportWriter
from ktsweep.service.scheduler import Scheduler
from ktsweep.service.spec import SpecError

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
    leader: LeaderLink | None = None,
    report_count: ReportCount | None = None,
    internal_token: str | None = None,
) -> FastAPI:
    """Build the controller app.

    Args:
        settings: Settings; default read from the environment.
        executor: What runs trials; default a `ktsweep.worker.RayTrialExecutor` on
            `settings.ray_address` (a local Ray when unset).
        leader: Makes this app a follower of the leader process at the other end (see
            `ktsweep.service.processes`): it schedules nothing and hands the leader what only the
            scheduler can do. The leader has already brought the database schema up to date.
        report_count: Where accepted reports are counted (shared by the API's processes).
        internal_token: On the leader of several processes: the token its followers show.
    """
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    if leader is None:
        migrate(engine)
    sessions = make_sessions(engine)
    with sessions() as session:
        secret = load_or_create_secret(session, settings.secret)
    metrics = Metrics(sessions, report_count)
    if leader is not None:
        scheduler = FollowerScheduler(secret, leader, metrics)
    else:
        if executor is None:
            from ktsweep.worker.ray_runner import RayTrialExecutor

            executor = RayTrialExecutor(settings.ray_address)
        scheduler = Scheduler(
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

    connections = AsyncConnections(engine)
    reports = ReportWriter(connections)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.start()
        scheduler.learn_report_rules()
        await connections.open(warm_up=store.warm_up_reads)
        # Everything loaded so far (TensorFlow, Ray, ...) lives as long as the process; left
        # to the collector, each full collection walks it all and stalls every request.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # what this app held can be collected again once it stops
            await reports.close()
            scheduler.stop()
            await connections.dispose()
            engine.dispose()
            if leader is not None:
                await leader.close()

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
    role = "follower" if leader is not None else "scheduler"
    app.state.settings = settings
    app.state.connections = connections
    app.state.sessions = sessions
    app.state.reports = reports
    app.state.sweep_goals = {}  # sweep id -> metric goal, for listing trials by metric
    app.state.scheduler = scheduler
    app.state.metrics = metrics
    # Specs are parsed on worker threads, a few at a time: a large one never stalls the loop.
    app.state.spec_parsers = anyio.CapacityLimiter(SPEC_PARSERS)
    app.include_router(sweeps.router, prefix=API_PREFIX)
    app.include_router(trials.router, prefix=API_PREFIX)
    app.include_router(web.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """The process is up; which process answered (`role` "scheduler" or "follower", and
        its `pid`: see `ktsweep serve --processes`)."""
        return {"status": "ok", "role": role, "pid": os.getpid()}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready yet."}})
    def readyz(request: Request):
        """Ready to take sweeps: the database answers and Ray is connected. What is not ready
        is said only to a caller who may read (the status code is for probes)."""
        problems = []
        try:
            with sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            problems.append(f"database: {exc}")
        import ray

        if not ray.is_initialized():
            problems.append("ray: not connected")
        if not scheduler.is_alive:
            problems.append("scheduler: not running")
        if problems:
            content = {"status": "not ready"}
            if may_read(request):
                content["problems"] = problems
            return SafeJSONResponse(status_code=503, content=content)
        return {"status": "ready"}

    @app.get("/metrics", tags=["health"], response_class=Response, dependencies=[ReadAccess])
    def prometheus_metrics():
        """Prometheus metrics: trials by state, scheduling latency, reports, Ray resources."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if leader is not None:
        app.add_middleware(ForwardToLeader, leader=leader)
    if internal_token is not None:
        add_internal_routes(app, internal_token)
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
