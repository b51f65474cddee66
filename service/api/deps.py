"""Dependencies shared by the routes: the database session and the scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.scheduler import Scheduler


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


SessionDep = Annotated[Session, Depends(get_session)]
SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]
