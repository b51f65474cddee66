"""Dependencies shared by the routes: the database session, the scheduler, and auth checks.

The scheduler is `app.state.scheduler`: the `Scheduler` itself where this process schedules,
or, in an API process without one (`ktsweep serve --no-scheduler`), the
`ktsweep.service.stateless.ApiScheduler` that writes to the database and wakes the active
scheduler. Both have the methods the routes call.

The checks are `async` though they never wait: FastAPI runs a plain function dependency on a
worker thread, a thread hop per request for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from ktsweep.service import auth
from ktsweep.service.scheduler import Scheduler
from ktsweep.service.stateless import ApiScheduler


class AuthError(Exception):
    """A request without the token it needs (401) or with one that may not do this (403)."""

    def __init__(self, status_code: int, message: str):
        self.status_code = status_code
        super().__init__(message)


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


async def get_scheduler(request: Request) -> Scheduler | ApiScheduler:
    return request.app.state.scheduler


SessionDep = Annotated[Session, Depends(get_session)]
SchedulerDep = Annotated[Scheduler | ApiScheduler, Depends(get_scheduler)]
AuthorizationHeader = Annotated[
    str | None, Header(description="`Bearer <token>`; see KTSWEEP_API_TOKENS.")
]

_MISSING = (
    "this endpoint needs `Authorization: Bearer <token>` with one of the tokens in "
    "KTSWEEP_API_TOKENS."
)
_WRONG = "the bearer token is not valid; use one of the tokens in KTSWEEP_API_TOKENS."


def _check_operator(request: Request, authorization: str | None) -> None:
    tokens = request.app.state.settings.tokens
    if not tokens:
        return  # no tokens configured: the service only listens on loopback
    token = auth.bearer(authorization)
    if token is None:
        raise AuthError(401, _MISSING)
    if not auth.is_operator_token(token, tokens):
        raise AuthError(401, _WRONG)


async def require_write(request: Request, authorization: AuthorizationHeader = None) -> None:
    """Writes always need an operator token once tokens are configured."""
    _check_operator(request, authorization)


def may_read(request: Request) -> bool:
    """Whether this request may read (the check of `require_read`, as a yes or no)."""
    try:
        if not request.app.state.settings.open_reads:
            _check_operator(request, request.headers.get("authorization"))
    except AuthError:
        return False
    return True


async def require_read(request: Request, authorization: AuthorizationHeader = None) -> None:
    """Reads need a token too, unless the operator set KTSWEEP_OPEN_READS=1."""
    if request.app.state.settings.open_reads:
        return
    _check_operator(request, authorization)


async def require_report(
    request: Request, trial_id: str, authorization: AuthorizationHeader = None
) -> None:
    """Reports take an operator token, or the trial's own token (only for that trial)."""
    tokens = request.app.state.settings.tokens
    if not tokens:
        return
    token = auth.bearer(authorization)
    if token is None:
        raise AuthError(401, _MISSING + " Workers use the trial token they were given.")
    if auth.is_operator_token(token, tokens):
        return
    secret = request.app.state.scheduler.secret
    if auth.is_trial_token_for(secret, token, trial_id):
        return
    if token.startswith("trial."):
        raise AuthError(403, f"this trial token may only report for its own trial, not {trial_id}.")
    raise AuthError(401, _WRONG)


WriteAccess = Depends(require_write)
ReadAccess = Depends(require_read)
ReportAccess = Depends(require_report)
