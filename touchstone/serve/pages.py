"""The pages: server-rendered HTML (Jinja2) with a little JavaScript (static/app.js) that calls the API.
Nothing is fetched from elsewhere: the stylesheet and the script are this package's own files."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from touchstone.serve import views
from touchstone.serve.errors import NotFound
from touchstone.serve.state import state_of
from touchstone.worlds.wing import AIRFOILS

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f}%"
templates.env.filters["signed"] = lambda v: "" if v is None else f"{100 * v:+.1f}"
templates.env.filters["pvalue"] = lambda v: "" if v is None else f"{v:.3g}"

# The debate page's starting designs: a feasible wing and a shorter one on the same mission.
DEFAULT_DESIGNS = {
    "a": {"span": 10.0, "root_chord": 1.2, "taper": 0.5, "sweep": 5, "twist": -2.0, "airfoil": "naca2412"},
    "b": {"span": 7.0, "root_chord": 1.2, "taper": 0.5, "sweep": 5, "twist": -2.0, "airfoil": "naca0012"},
    "mission": {"speed": 50, "altitude": 2000, "weight": 4000, "alpha_limit": 10, "max_span": 14.0},
}


@functools.lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    # Raw HTML in a report is shown as text, never run.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def render_markdown(text: str, image_base: str) -> str:
    """Markdown to HTML; a relative image (`![plot](eval-tasks.png)`) is served from `image_base`."""
    md = _markdown()
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if src and "://" not in src and not src.startswith(("/", "data:")):
                child.attrSet("src", image_base + Path(src).name)
    return md.renderer.render(tokens, md.options, {})


def _page(request: Request, template: str, **context) -> HTMLResponse:
    state = state_of(request)
    wanted = state.judges.wanted()
    return templates.TemplateResponse(
        request, template, {"model": wanted.name if wanted else None, "workspace": str(state.ws.root), **context}
    )


@router.get("/", response_class=HTMLResponse)
async def compare(request: Request):
    return _page(request, "compare.html", page="compare")


@router.get("/debate", response_class=HTMLResponse)
async def debate(request: Request):
    return _page(request, "debate.html", page="debate", designs=DEFAULT_DESIGNS, airfoils=AIRFOILS)


@router.get("/loop", response_class=HTMLResponse)
async def loop(request: Request):
    state = state_of(request)
    try:
        status = await asyncio.to_thread(views.loop_status, state.ws)
        history = await asyncio.to_thread(state.history.get, state.ws)
    except NotFound as e:
        status, history, missing = None, None, str(e)
    else:
        missing = None
    return _page(
        request,
        "loop.html",
        page="loop",
        status=status,
        history=history,
        missing=missing,
        run=json.dumps(state.loop.snapshot(), default=str),
    )


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request):
    state = state_of(request)
    champion = state.ws.champion()
    rows = [views.model_summary(n, d, champion) for n, d in views.model_dirs(state.ws, state.cfg.model).items()]
    return _page(request, "models.html", page="models", models=rows)


@router.get("/models/{name}", response_class=HTMLResponse)
async def model(name: str, request: Request):
    state = state_of(request)
    dirs = views.model_dirs(state.ws, state.cfg.model)
    if name not in dirs:
        champion = state.ws.champion()
        rows = [views.model_summary(n, d, champion) for n, d in dirs.items()]
        return _page(request, "models.html", page="models", models=rows, missing=f"no model '{name}' here")
    report = await asyncio.to_thread(views.model_report, name, dirs[name], state.ws.champion(), dirs)
    base = request.url_for("model_file", name=name, filename="x").path[:-1]
    html = {f: render_markdown(text, base) for f, text in report["reports"].items()}
    import yaml

    recipe = yaml.safe_dump(report["recipe"], sort_keys=False) if report["recipe"] else None
    # Plots a report shows are drawn there; the others get a card of their own.
    loose = [f for f in report["plots"] if not any(f"({f})" in text for text in report["reports"].values())]
    return _page(request, "model.html", page="models", m=report, html=html, recipe=recipe, base=base, plots=loose)
