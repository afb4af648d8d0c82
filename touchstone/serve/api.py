"""The JSON API, /api/v1: every request and response schema is a pydantic model, so all of them are
in the OpenAPI document (/openapi.json, browsable at /docs)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from touchstone.errors import UserError
from touchstone.serve import views
from touchstone.serve.state import NotFound, Unavailable, matplotlib_lock

# 20,000 characters holds the longest question any world writes (a code pair with its tests is about
# 2,000) ten times over; the model reads at most its context (the end of a longer question) anyway.
MAX_CHARS = 20_000
MAX_GENERATIONS = 100

router = APIRouter()


def _state(request: Request):
    return request.app.state.touchstone


# -------------------------------------------------------------------------------------------- schemas
class PairQuestion(BaseModel):
    prompt: str = Field("", max_length=MAX_CHARS, description="the question or context; may be empty")
    a: str = Field(min_length=1, max_length=MAX_CHARS, description="the first version")
    b: str = Field(min_length=1, max_length=MAX_CHARS, description="the second version")


class ClaimQuestion(BaseModel):
    statement: str = Field(min_length=1, max_length=MAX_CHARS)


class PairJudgement(BaseModel):
    """Exactly what `touchstone judge --a --b` prints (`Judge.pairs`)."""
    choice: Literal["a", "b"]
    p_a: float
    p_b: float


class ClaimJudgement(BaseModel):
    """Exactly what `touchstone judge --statement` prints (`Judge.claims`)."""
    choice: bool
    p_true: float
    p_false: float
    method: str


class ToolAnswer(BaseModel):
    world: str = Field(description="the world that read the question as its own")
    answer: Literal["a", "b"] | bool | None = Field(description="the tool's answer; null when it cannot tell")
    reason: str | None = Field(description="why the tool cannot tell (ambiguous, tie, ...); null when it answers")
    evidence: dict[str, Any] = Field(description="what the tool saw: the error a function raised, the true sum, "
                                                 "the colours' distances and hexes, the wings' figures")


class Orders(BaseModel):
    a_first: float = Field(description="p(a is better) asked with a shown first")
    b_first: float = Field(description="p(a is better) asked with b shown first")


class PairAnswer(BaseModel):
    model: str
    judge: PairJudgement
    orders: Orders = Field(description="each order's reading alone; `judge` averages their log-odds")
    verifier: ToolAnswer | None = Field(description="null when no world recognises the question")
    agree: bool | None = Field(description="the judge and the tool give the same answer (null: no answer to compare)")


class ClaimAnswer(BaseModel):
    model: str
    judge: ClaimJudgement
    verifier: ToolAnswer | None
    agree: bool | None


class VerdictOut(BaseModel):
    world: str
    ok: bool
    score: float
    reason: str
    evidence: dict[str, Any]


class WingDesign(BaseModel):
    """A wing and, for design A, the mission (design B takes A's mission keys it lacks)."""
    span: float = Field(gt=0, le=200, description="m")
    root_chord: float = Field(gt=0, le=50, description="m")
    taper: float = Field(gt=0, le=1, description="tip chord / root chord")
    sweep: float = Field(ge=-60, le=60, description="quarter-chord sweep, deg")
    twist: float = Field(ge=-20, le=20, description="tip incidence relative to the root, deg (negative: washout)")
    airfoil: str = Field(pattern=r"^naca\d{4}$", description="NACA 4-digit section, e.g. naca2412")
    speed: float | None = Field(None, gt=0, le=340, description="m/s")
    altitude: float | None = Field(None, ge=0, le=20000, description="m")
    weight: float | None = Field(None, gt=0, le=1e7, description="N")
    alpha_limit: float | None = Field(None, gt=0, le=30, description="deg")
    max_span: float | None = Field(None, gt=0, le=1e9, description="m")


class DebateQuestion(BaseModel):
    a: WingDesign
    b: WingDesign


class Simulator(BaseModel):
    better: Literal["a", "b"] | None
    reason: str


class DebateAnswer(BaseModel):
    model: str
    choice: Literal["a", "b"]
    confidence: float
    p_a: float
    p_b: float
    text: str = Field(description="the argued choice, as `touchstone debate` prints it")
    designs: dict[str, dict[str, Any]] = Field(description="both designs as analysed (rounded, mission filled in)")
    figures: dict[str, dict[str, Any]] = Field(description="the simulator's figures of each design")
    simulator: Simulator
    drawing: str = Field(description="both planforms, a data: URL of a PNG")


class Example(BaseModel):
    world: str
    prompt: str
    a: str
    b: str


class Retrain(BaseModel):
    generations: int = Field(1, ge=1, le=MAX_GENERATIONS, description="generations to add to the workspace")


class LoopRun(BaseModel):
    running: bool
    run: dict[str, Any] | None = Field(description="what was asked, its progress, its exit status")
    log: list[str] = Field(description="the loop's last output lines")


class LoopStatus(BaseModel):
    workspace: str
    champion: str | None
    generation: int | None = Field(description="the last decided generation")
    finished: int
    promoted: int
    rejected: int
    in_progress: list[dict[str, Any]]
    data: dict[str, int]
    held_out: dict[str, float] = Field(description="the champion's held-out suite accuracy per world")
    last_decisions: list[dict[str, Any]]
    text: str = Field(description="exactly what `touchstone status` prints")


class LoopHistory(BaseModel):
    generations: list[dict[str, Any]]
    markdown: str = Field(description="reports/history.md as `touchstone history` writes it")
    plot: str | None = Field(description="URL of the held-out curve (PNG), null before any decision")


class ModelSummary(BaseModel):
    name: str
    champion: bool
    stage: str | None
    created: float | None
    held_out: dict[str, float]
    generation: int | None
    trained_from: str | None


class ModelReport(ModelSummary):
    recipe: dict[str, Any] | None
    eval: dict[str, dict[str, Any]]
    manifest: dict[str, Any]
    lineage: list[dict[str, Any]]
    reports: dict[str, str] = Field(description="the folder's Markdown reports by file name")
    report_html: dict[str, str] = Field(description="the same, rendered to HTML (image links point at /files)")
    plots: list[str] = Field(description="URLs of the folder's PNG plots")


# -------------------------------------------------------------------------------------------- judging
async def _judge_and_verify(request: Request, record: dict) -> dict:
    state = _state(request)

    async def verify():
        try:
            return await asyncio.wait_for(asyncio.to_thread(state.worlds.recognise, record), state.cfg.judge_seconds)
        except asyncio.TimeoutError:
            return None

    (name, judged), tool = await asyncio.gather(state.judges.ask(record), verify())
    agree = None
    if tool is not None and tool["answer"] is not None:
        agree = judged["choice"] == tool["answer"]
    out = {"model": name, "judge": {k: v for k, v in judged.items() if k != "orders"}, "verifier": tool,
           "agree": agree}
    if "orders" in judged:
        out["orders"] = judged["orders"]
    return out


@router.post("/judge/pair", response_model=PairAnswer, tags=["judge"],
             summary="which of two versions is better, and the tool's verdict where a world applies")
async def judge_pair(q: PairQuestion, request: Request):
    return await _judge_and_verify(request, q.model_dump())


@router.post("/judge/claim", response_model=ClaimAnswer, tags=["judge"],
             summary="is a statement true, and the tool's verdict where a world applies")
async def judge_claim(q: ClaimQuestion, request: Request):
    return await _judge_and_verify(request, q.model_dump())


_examples: list[dict] = []


@router.get("/examples", response_model=list[Example], tags=["judge"],
            summary="one question in each world's own format, to try")
async def examples():
    if not _examples:
        _examples.extend(await asyncio.to_thread(_make_examples))
    return _examples


def _make_examples() -> list[dict]:
    from touchstone.serve.state import RECOGNISING
    from touchstone.worlds import get_world

    out = []
    for name in RECOGNISING:
        records = get_world(name).render(random.Random(1), 8)
        pair = next((r for r in records if "a" in r), None)
        if pair is not None:
            out.append({"world": name, "prompt": pair["prompt"], "a": pair["a"], "b": pair["b"]})
    return out


# ------------------------------------------------------------------------------------------- verifying
@router.post("/verify/{world}", response_model=VerdictOut, tags=["worlds"],
             summary="a world's verdict for a record (pair or claim with its label) or a raw item")
async def verify(world: str, request: Request, body: dict[str, Any]):
    from touchstone.records import parse_label
    from touchstone.worlds import WORLDS

    if world not in WORLDS:
        raise NotFound(f"unknown world '{world}' (choose from {', '.join(WORLDS)})")
    if "a" in body or "b" in body:
        for key in ("a", "b", "label"):
            if key not in body:
                raise UserError(f"body: missing key '{key}'")
        if body["label"] not in ("a", "b"):
            raise UserError(f"body.label: must be \"a\" or \"b\", got {body['label']!r}")
        body = {"prompt": "", **body}
    elif "statement" in body:
        if "label" not in body:
            raise UserError("body: missing key 'label'")
        body = {**body, "label": parse_label(body["label"], "body.label")}
    state = _state(request)

    def run():
        try:
            return state.worlds.get(world).verify_many([body])[0]
        except KeyError as e:
            raise UserError(f"body: missing key {e}") from None
        except (TypeError, ValueError) as e:
            raise UserError(f"body: {e}") from None

    try:
        verdict = await asyncio.wait_for(asyncio.to_thread(run), state.cfg.judge_seconds)
    except asyncio.TimeoutError:
        raise Unavailable(f"the {world} tool did not answer within {state.cfg.judge_seconds:g} s") from None
    return {"world": world, **verdict.to_dict()}


# -------------------------------------------------------------------------------------------- debating
@router.post("/debate", response_model=DebateAnswer, tags=["debate"],
             summary="the model's choice between two wing designs, argued with the simulator's figures")
async def debate(q: DebateQuestion, request: Request):
    from touchstone.debate import argue, check_designs, question

    state = _state(request)
    a, b = check_designs(q.a.model_dump(exclude_none=True), q.b.model_dump(exclude_none=True))
    record = question(a, b)
    (name, judged), (figures, verdict) = await asyncio.gather(state.judges.ask(record),
                                                              asyncio.to_thread(_simulate, a, b))
    choice = judged["choice"]
    text = await asyncio.to_thread(argue, choice, judged["p_" + choice], a, b)
    drawing = await asyncio.to_thread(_drawing, a, b)
    return {"model": name, "choice": choice, "confidence": judged["p_" + choice], "p_a": judged["p_a"],
            "p_b": judged["p_b"], "text": text, "designs": {"a": a, "b": b}, "figures": figures,
            "simulator": {"better": verdict.evidence.get("better") if verdict.ok else None, "reason": verdict.reason},
            "drawing": "data:image/png;base64," + base64.b64encode(drawing).decode()}


def _simulate(a: dict, b: dict):
    from touchstone.worlds.wing import analyze, compare

    try:
        return {"a": analyze(a), "b": analyze(b)}, compare(a, b)
    except ValueError as e:  # the solver's own check of the numbers (a taper of 0, an unknown airfoil)
        raise UserError(f"design: {e}") from None


def _drawing(a: dict, b: dict) -> bytes:
    from touchstone.worlds.wing import plot_wings

    with tempfile.TemporaryDirectory() as tmp, matplotlib_lock:
        path = Path(tmp) / "wings.png"
        plot_wings([a, b], path, labels=["A", "B"])
        return path.read_bytes()


@router.get("/wing/random", response_model=WingDesign, tags=["debate"],
            summary="a random design with its mission, from the wing world's own sampler")
async def wing_random(seed: int | None = None):
    from touchstone.worlds.wing import WingWorld

    return WingWorld().sample(random.Random(seed))


@router.post("/wing/variant", response_model=WingDesign, tags=["debate"],
             summary="another wing for the same mission: the wing world's mutation of a design")
async def wing_variant(design: WingDesign, seed: int | None = None):
    from touchstone.debate import check_designs
    from touchstone.worlds.wing import WingWorld

    d = design.model_dump(exclude_none=True)
    full, _ = check_designs(d, d)
    return WingWorld().mutate(full, random.Random(seed))


# ------------------------------------------------------------------------------------------------ loop
@router.get("/loop/status", response_model=LoopStatus, tags=["loop"], summary="what `touchstone status` shows")
async def loop_status(request: Request):
    return await asyncio.to_thread(views.loop_status, _state(request).ws)


@router.get("/loop/history", response_model=LoopHistory, tags=["loop"], summary="what `touchstone history` shows")
async def loop_history(request: Request):
    state = _state(request)
    out = await asyncio.to_thread(state.history.get, state.ws)
    return {**out, "plot": request.url_for("loop_history_plot").path if out["plot"] else None}


@router.get("/loop/history.png", tags=["loop"], response_class=FileResponse,
            summary="the held-out curve, as `touchstone history` draws it")
async def loop_history_plot(request: Request):
    state = _state(request)
    out = await asyncio.to_thread(state.history.get, state.ws)
    if not out["plot"]:
        raise NotFound("no plot yet: the loop has decided no generation")
    return FileResponse(state.history.plot_path, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/loop/retrain", response_model=LoopRun, status_code=202, tags=["loop"],
             summary="start generations of the loop in the background (409 while one runs)")
async def loop_retrain(q: Retrain, request: Request):
    return await _state(request).loop.start(q.generations)


@router.get("/loop/run", response_model=LoopRun, tags=["loop"], summary="the current or last retrain")
async def loop_run(request: Request):
    return _state(request).loop.snapshot()


@router.get("/loop/events", tags=["loop"], response_class=StreamingResponse,
            summary="the retrain's progress as server-sent events",
            description="Events: `state` (on connecting: the current run), `started`, `progress` (generation, "
                        "step, steps_done, steps_total, percent), `decision` (generation, decision, p_value, reason, "
                        "suite scores), `log` (a line of the loop's output), `finished` (exit status, error).",
            responses={200: {"content": {"text/event-stream": {}}}})
async def loop_events(request: Request):
    state = _state(request)
    runner = state.loop
    queue: asyncio.Queue = asyncio.Queue()
    runner.subscribers.add(queue)

    async def stream():
        closing = asyncio.ensure_future(state.closing.wait())
        try:
            yield _sse("state", runner.snapshot())
            while not state.closing.is_set():
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, closing}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    if not done and not await request.is_disconnected():
                        yield ": keep-alive\n\n"  # also how a client that went away is noticed
                        continue
                    break
                event, data = get.result()
                yield _sse(event, data)
        finally:
            closing.cancel()
            runner.subscribers.discard(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


# ---------------------------------------------------------------------------------------------- models
@router.get("/models", response_model=list[ModelSummary], tags=["models"],
            summary="the workspace's models (and the served --model) with their held-out scores and lineage")
async def models(request: Request):
    state = _state(request)
    champion = state.ws.champion()
    return [views.model_summary(n, d, champion) for n, d in views.model_dirs(state.ws, state.cfg.model).items()]


def _model_dir(request: Request, name: str) -> Path:
    state = _state(request)
    dirs = views.model_dirs(state.ws, state.cfg.model)
    if name not in dirs:
        raise NotFound(f"no model '{name}' (have: {', '.join(dirs) or 'none'})")
    return dirs[name]


@router.get("/models/{name}/report", response_model=ModelReport, tags=["models"],
            summary="a model's recipe, eval results, lineage and reports")
async def model_report(name: str, request: Request):
    from touchstone.serve.pages import render_markdown

    state = _state(request)
    d = _model_dir(request, name)
    report = await asyncio.to_thread(views.model_report, name, d, state.ws.champion(),
                                     views.model_dirs(state.ws, state.cfg.model))
    base = request.url_for("model_file", name=name, filename="x").path[:-1]
    report["report_html"] = {f: render_markdown(text, base) for f, text in report["reports"].items()}
    report["plots"] = [base + p for p in report["plots"]]
    return report


@router.get("/models/{name}/files/{filename}", tags=["models"], response_class=FileResponse,
            summary="a report (.md) or plot (.png) from a model's folder")
async def model_file(name: str, filename: str, request: Request):
    return FileResponse(views.model_file(_model_dir(request, name), filename))
