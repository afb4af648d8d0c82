"""The workspace's models (and the served --model): held-out scores, lineage, recipes, reports and plots."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from touchstone.serve import views
from touchstone.serve.errors import NotFound
from touchstone.serve.pages import render_markdown
from touchstone.serve.state import state_of

router = APIRouter()


class ModelSummary(BaseModel):
    name: str
    champion: bool
    stage: str | None
    created: float | None
    held_out: dict[str, float]
    generation: int | None
    trained_from: str | None
    weights: bool = Field(description="False for a rejected challenger whose weights the loop deleted")


class ModelReport(ModelSummary):
    recipe: dict[str, Any] | None
    eval: dict[str, dict[str, Any]]
    manifest: dict[str, Any]
    lineage: list[dict[str, Any]]
    reports: dict[str, str] = Field(description="the folder's Markdown reports by file name")
    report_html: dict[str, str] = Field(description="the same, rendered to HTML (image links point at /files)")
    plots: list[str] = Field(description="URLs of the folder's PNG plots")


@router.get(
    "/models",
    response_model=list[ModelSummary],
    tags=["models"],
    summary="the workspace's models (and the served --model) with their held-out scores and lineage",
)
async def models(request: Request):
    state = state_of(request)
    champion = state.ws.champion()
    return [views.model_summary(n, d, champion) for n, d in views.model_dirs(state.ws, state.cfg.model).items()]


def _model_dir(request: Request, name: str) -> Path:
    state = state_of(request)
    dirs = views.model_dirs(state.ws, state.cfg.model)
    if name not in dirs:
        raise NotFound(f"no model '{name}' (have: {', '.join(dirs) or 'none'})")
    return dirs[name]


@router.get("/models/{name}/report", response_model=ModelReport, tags=["models"], summary="a model's report")
async def model_report(name: str, request: Request):
    """A model's recipe, eval results, lineage and reports."""
    state = state_of(request)
    d = _model_dir(request, name)
    report = await asyncio.to_thread(
        views.model_report, name, d, state.ws.champion(), views.model_dirs(state.ws, state.cfg.model)
    )
    base = request.url_for("model_file", name=name, filename="x").path[:-1]
    report["report_html"] = {f: render_markdown(text, base) for f, text in report["reports"].items()}
    report["plots"] = [base + p for p in report["plots"]]
    return report


@router.get(
    "/models/{name}/files/{filename}",
    tags=["models"],
    response_class=FileResponse,
    summary="a report (.md) or plot (.png) from a model's folder",
)
async def model_file(name: str, filename: str, request: Request):
    return FileResponse(views.model_file(_model_dir(request, name), filename))
