"""The web dashboard, served at `/` by the controller."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
