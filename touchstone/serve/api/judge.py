"""Judging a pair or a claim (with the tool's verdict where a world applies), and a world's verdict alone."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from touchstone.errors import UserError
from touchstone.records import is_judged, is_pair, parse_record
from touchstone.serve.errors import NotFound, Unavailable
from touchstone.serve.state import recognising, state_of
from touchstone.worlds import WORLDS, get_world

# 20,000 characters holds the longest question any world writes (a code pair with its tests is about
# 2,000) ten times over; the model reads at most its context (the end of a longer question) anyway.
MAX_CHARS = 20_000

router = APIRouter()


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
    evidence: dict[str, Any] = Field(
        description="what the tool saw: the error a function raised, the true sum, "
        "the colours' distances and hexes, the wings' figures"
    )


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


class Example(BaseModel):
    world: str
    prompt: str
    a: str
    b: str


async def _judge_and_verify(request: Request, record: dict) -> dict:
    state = state_of(request)

    async def verify():
        try:
            return await asyncio.wait_for(asyncio.to_thread(state.worlds.recognise, record), state.cfg.judge_seconds)
        except asyncio.TimeoutError:
            return None

    (name, judged), tool = await asyncio.gather(state.judges.ask(record), verify())
    agree = None
    if tool is not None and tool["answer"] is not None:
        agree = judged["choice"] == tool["answer"]
    out = {"model": name, "judge": {k: v for k, v in judged.items() if k != "orders"}, "verifier": tool, "agree": agree}
    if "orders" in judged:
        out["orders"] = judged["orders"]
    return out


@router.post("/judge/pair", response_model=PairAnswer, tags=["judge"], summary="judge two versions")
async def judge_pair(q: PairQuestion, request: Request):
    """Which of two versions is better, and the tool's verdict where a world applies."""
    return await _judge_and_verify(request, q.model_dump())


@router.post("/judge/claim", response_model=ClaimAnswer, tags=["judge"], summary="judge a statement")
async def judge_claim(q: ClaimQuestion, request: Request):
    """Is a statement true, and the tool's verdict where a world applies."""
    return await _judge_and_verify(request, q.model_dump())


_examples: list[dict] = []


@router.get(
    "/examples", response_model=list[Example], tags=["judge"], summary="one question in each world's own format, to try"
)
async def examples():
    if not _examples:
        _examples.extend(await asyncio.to_thread(_make_examples))
    return _examples


def _make_examples() -> list[dict]:
    out = []
    for name in recognising():
        records = get_world(name).render(random.Random(1), 8)
        pair = next((r for r in records if is_pair(r)), None)
        if pair is not None:
            out.append({"world": name, "prompt": pair["prompt"], "a": pair["a"], "b": pair["b"]})
    return out


@router.post(
    "/verify/{world}",
    response_model=VerdictOut,
    tags=["worlds"],
    summary="a world's verdict for a record (pair or claim with its label) or a raw item",
)
async def verify(world: str, request: Request, body: dict[str, Any]):
    if world not in WORLDS:
        raise NotFound(f"unknown world '{world}' (choose from {', '.join(WORLDS)})")
    if is_judged(body):
        body = parse_record(body, "body", text_sides=False)
    state = state_of(request)

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
