"""The loop: what `touchstone status` and `history` show, and retraining in the background with its
progress as server-sent events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from touchstone.serve import views
from touchstone.serve.errors import NotFound
from touchstone.serve.state import state_of

MAX_GENERATIONS = 100

router = APIRouter()


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


@router.get("/loop/status", response_model=LoopStatus, tags=["loop"], summary="what `touchstone status` shows")
async def loop_status(request: Request):
    return await asyncio.to_thread(views.loop_status, state_of(request).ws)


@router.get("/loop/history", response_model=LoopHistory, tags=["loop"], summary="what `touchstone history` shows")
async def loop_history(request: Request):
    state = state_of(request)
    out = await asyncio.to_thread(state.history.get, state.ws)
    return {**out, "plot": request.url_for("loop_history_plot").path if out["plot"] else None}


@router.get(
    "/loop/history.png",
    tags=["loop"],
    response_class=FileResponse,
    summary="the held-out curve, as `touchstone history` draws it",
)
async def loop_history_plot(request: Request):
    state = state_of(request)
    out = await asyncio.to_thread(state.history.get, state.ws)
    if not out["plot"]:
        raise NotFound("no plot yet: the loop has decided no generation")
    return FileResponse(state.history.plot_path, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post(
    "/loop/retrain",
    response_model=LoopRun,
    status_code=202,
    tags=["loop"],
    summary="start generations of the loop in the background (409 while one runs)",
)
async def loop_retrain(q: Retrain, request: Request):
    return await state_of(request).loop.start(q.generations)


@router.get("/loop/run", response_model=LoopRun, tags=["loop"], summary="the current or last retrain")
async def loop_run(request: Request):
    return state_of(request).loop.snapshot()


@router.get(
    "/loop/events",
    tags=["loop"],
    response_class=StreamingResponse,
    summary="the retrain's progress as server-sent events",
    description="Events: `state` (on connecting: the current run), `started`, `progress` (generation, "
    "step, steps_done, steps_total, percent), `decision` (generation, decision, p_value, reason, "
    "suite scores), `log` (a line of the loop's output), `finished` (exit status, error).",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def loop_events(request: Request):
    state = state_of(request)
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

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
