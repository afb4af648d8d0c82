"""Debating two wing designs: the model's choice argued with the simulator's figures, and designs to try."""

from __future__ import annotations

import asyncio
import base64
import random
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from touchstone.debate import argue, check_designs, question
from touchstone.errors import UserError
from touchstone.serve.state import state_of
from touchstone.serve.views import matplotlib_lock
from touchstone.worlds.wing import WingWorld, analyze, compare, plot_wings

router = APIRouter()


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


@router.post("/debate", response_model=DebateAnswer, tags=["debate"], summary="argue a choice of wing")
async def debate(q: DebateQuestion, request: Request):
    """The model's choice between two wing designs, argued with the simulator's figures."""
    state = state_of(request)
    a, b = check_designs(q.a.model_dump(exclude_none=True), q.b.model_dump(exclude_none=True))
    record = question(a, b)
    (name, judged), (figures, verdict) = await asyncio.gather(
        state.judges.ask(record), asyncio.to_thread(_simulate, a, b)
    )
    choice = judged["choice"]
    text = await asyncio.to_thread(argue, choice, judged["p_" + choice], a, b)
    drawing = await asyncio.to_thread(_drawing, a, b)
    return {
        "model": name,
        "choice": choice,
        "confidence": judged["p_" + choice],
        "p_a": judged["p_a"],
        "p_b": judged["p_b"],
        "text": text,
        "designs": {"a": a, "b": b},
        "figures": figures,
        "simulator": {"better": verdict.evidence.get("better") if verdict.ok else None, "reason": verdict.reason},
        "drawing": "data:image/png;base64," + base64.b64encode(drawing).decode(),
    }


def _simulate(a: dict, b: dict):
    try:
        return {"a": analyze(a), "b": analyze(b)}, compare(a, b)
    except ValueError as e:  # the solver's own check of the numbers (a taper of 0, an unknown airfoil)
        raise UserError(f"design: {e}") from None


def _drawing(a: dict, b: dict) -> bytes:
    with tempfile.TemporaryDirectory() as tmp, matplotlib_lock:
        path = Path(tmp) / "wings.png"
        plot_wings([a, b], path, labels=["A", "B"])
        return path.read_bytes()


@router.get(
    "/wing/random",
    response_model=WingDesign,
    tags=["debate"],
    summary="a random design with its mission, from the wing world's own sampler",
)
async def wing_random(seed: int | None = None):
    return WingWorld().sample(random.Random(seed))


@router.post(
    "/wing/variant",
    response_model=WingDesign,
    tags=["debate"],
    summary="another wing for the same mission: the wing world's mutation of a design",
)
async def wing_variant(design: WingDesign, seed: int | None = None):
    d = design.model_dump(exclude_none=True)
    full, _ = check_designs(d, d)
    return WingWorld().mutate(full, random.Random(seed))
