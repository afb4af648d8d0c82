"""The JSON API, /api/v1: every request and response schema is a pydantic model, so all of them are
in the OpenAPI document (/openapi.json, browsable at /docs). One module per concern: judging and
verifying (`judge`), wing debates (`debate`), the loop (`loop`) and the workspace's models (`models`)."""

from __future__ import annotations

from fastapi import APIRouter

from touchstone.serve.api import debate, judge, loop, models

router = APIRouter()
for part in (judge, debate, loop, models):
    router.include_router(part.router)
