"""Bearer tokens: operator tokens from `KTSWEEP_API_TOKENS`, and per-trial tokens for workers.

A trial token is an HMAC of the trial id under the controller's secret, so it survives a
controller restart and can only report for the trial it was made for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from ktsweep.service.models import ControllerSetting

_SECRET_KEY = "trial_token_secret"


def load_or_create_secret(session: Session, configured: str | None = None) -> str:
    """The secret for trial tokens: `configured` if given, else one stored in the database."""
    if configured:
        return configured
    row = session.get(ControllerSetting, _SECRET_KEY)
    if row is None:
        row = ControllerSetting(key=_SECRET_KEY, value=secrets.token_hex(32))
        session.add(row)
        session.commit()
    return row.value


def trial_token(secret: str, trial_id: str) -> str:
    """The token that lets a worker report for `trial_id`, and nothing else."""
    digest = hmac.new(secret.encode(), trial_id.encode(), hashlib.sha256).hexdigest()
    return f"trial.{trial_id}.{digest}"


def is_trial_token_for(secret: str, token: str, trial_id: str) -> bool:
    return hmac.compare_digest(token.encode(), trial_token(secret, trial_id).encode())


def is_operator_token(token: str, tokens: list[str]) -> bool:
    """Constant-time comparison against every configured token."""
    matched = False
    for candidate in tokens:
        matched |= hmac.compare_digest(token.encode(), candidate.encode())
    return matched


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
