"""What the server holds between requests: the judge (following the champion), the worlds, and the
retrain runner with its progress events."""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

from touchstone.errors import UserError
from touchstone.loop.ledger import BOOTSTRAP_STEPS, STEPS, generation_stats
from touchstone.loop.workspace import Workspace
from touchstone.serve.errors import Conflict, Unavailable
from touchstone.serve.views import History
from touchstone.worlds import WORLDS, world_class


def recognising() -> list[str]:
    """The worlds that can read a question a person typed (`World.reads_typed_questions`)."""
    return [name for name in WORLDS if world_class(name).reads_typed_questions]


NOT_RECOGNISED = ("unparseable", "no_provenance")  # verify_record's reasons for "this text is not mine"


def state_of(request) -> State:
    """The application's State (its judges, worlds, loop runner) for a request."""
    return request.app.state.touchstone


class State:
    def __init__(self, cfg):
        self.cfg = cfg
        self.ws = Workspace(cfg.workspace)
        self.judges = JudgeHolder(self.ws, cfg)
        self.worlds = Worlds(self.ws)
        self.loop = LoopRunner(self.ws)
        self.history = History()
        self.closing = asyncio.Event()  # set when the server shuts down: event streams end

    async def close(self) -> None:
        await self.loop.stop()
        self.history.close()


# ---------------------------------------------------------------------------------------------- judge
class JudgeHolder:
    """The `AsyncJudge` of the model being served: --model, or else the workspace's champion, reloaded
    when models/CHAMPION names another model (the loop promoted one)."""

    def __init__(self, ws: Workspace, cfg):
        self.ws, self.cfg = ws, cfg
        self.path: Path | None = None
        self.judge = None
        self._lock = asyncio.Lock()

    def wanted(self) -> Path | None:
        if self.cfg.model is not None:
            return Path(self.cfg.model)
        champion = self.ws.champion()
        return self.ws.models / champion if champion else None

    async def get(self):
        """(model name, AsyncJudge), loading the model on first use and when the champion changes."""
        from touchstone.judge import AsyncJudge, Judge

        path = self.wanted()
        if path is None:
            raise Unavailable(
                f"no model to judge with: {self.ws.root} has no champion yet; press Retrain on the "
                "Loop page or start the server with --model DIR"
            )
        async with self._lock:
            if path != self.path:
                try:
                    judge = await asyncio.to_thread(Judge.load, path)
                except (OSError, ValueError, UserError) as e:
                    raise Unavailable(f"{path}: cannot load the model ({e})") from None
                self.judge = AsyncJudge(judge, max_wait=self.cfg.batch_wait, max_batch=self.cfg.batch_size, orders=True)
                self.path = path
        return self.path.name, self.judge

    async def ask(self, record: dict) -> tuple[str, dict]:
        """(model name, the judge's answer to a pair or claim record), within `judge_seconds`."""
        name, aj = await self.get()
        call = (
            aj.pair(record["a"], record["b"], record.get("prompt") or "")
            if "a" in record
            else aj.claim(record["statement"])
        )
        try:
            return name, await asyncio.wait_for(call, self.cfg.judge_seconds)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"the judge did not answer within {self.cfg.judge_seconds:g} s (busy); try again"
            ) from None


# --------------------------------------------------------------------------------------------- worlds
class Worlds:
    """The worlds, each made once; those that read a corpus read the workspace's when it has one."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._made: dict = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        from touchstone.worlds import get_world

        with self._lock:
            if name not in self._made:
                corpus = str(self.ws.orig) if self.ws.orig.is_dir() else None
                self._made[name] = get_world(name, corpus=corpus)
            return self._made[name]

    def recognise(self, record: dict) -> dict | None:
        """The tool's answer to a pair {prompt, a, b} or claim {statement} a person typed, from the first
        world that reads it as its own question: {"world", "answer" ("a"/"b", true/false, or None when the
        tool finds no clear answer), "reason", "evidence"}; None when no world recognises it.

        Asked through `verify_record` with the label "a" (or true): a verdict that agrees means a is the
        right answer, "label_disagrees" means b is, any other reason means the tool cannot tell."""
        is_pair = "a" in record
        probe = {**record, "label": "a" if is_pair else True}
        for name in recognising():
            try:
                verdict = self.get(name).verify_many([probe])[0]
            except (ValueError, KeyError, TypeError):  # the code world raises for text that is not code
                continue
            if verdict.reason in NOT_RECOGNISED:
                continue
            if verdict.ok:
                answer = "a" if is_pair else True
            elif verdict.reason == "label_disagrees":
                answer = "b" if is_pair else False
            else:
                answer = None
            return {
                "world": name,
                "answer": answer,
                "reason": None if answer is not None else verdict.reason,
                "evidence": verdict.evidence,
            }
        return None


# ---------------------------------------------------------------------------------------------- loop
def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the server dies, however it dies (Linux prctl; elsewhere
    a killed server leaves the loop running, which is as safe: it finishes or is killed in turn)."""
    with contextlib.suppress(OSError, AttributeError):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def read_progress(ws: Workspace, first_gen: int, generations: int, with_bootstrap: bool) -> dict:
    """Where a retrain of `generations` generations from `first_gen` stands, read from the ledger rows
    the loop commits after each step: steps done of the total, the step now running, decisions."""
    from touchstone.loop.ledger import Ledger

    total = len(STEPS) * generations + (len(BOOTSTRAP_STEPS) if with_bootstrap else 0)
    out = {"steps_done": 0, "steps_total": total, "percent": 0.0, "generation": None, "step": None, "decisions": []}
    if not ws.ledger_path.exists():
        out["generation"], out["step"] = 0, BOOTSTRAP_STEPS[0]
        return out
    ledger = Ledger(ws.ledger_path)
    try:
        rows = {g["gen"]: g for g in ledger.generations()}
        wanted = range(first_gen, first_gen + generations)
        done = {g: ledger.done_steps(g) for g in ([0] if with_bootstrap else []) + list(wanted)}
    finally:
        ledger.close()
    out["steps_done"] = sum(len(steps) for steps in done.values())
    out["percent"] = round(100 * out["steps_done"] / total, 1) if total else 100.0
    for gen in ([0] if with_bootstrap else []) + list(wanted):
        steps = BOOTSTRAP_STEPS if gen == 0 else STEPS
        todo = [s for s in steps if s not in done.get(gen, {})]
        if todo:  # the loop runs steps in order: the first one without a row is the one running
            out["generation"], out["step"] = gen, todo[0]
            break
    for gen in wanted:
        g = rows.get(gen)
        if g and g["decision"]:
            stats = generation_stats(g)
            out["decisions"].append(
                {
                    "generation": gen,
                    "decision": g["decision"],
                    "challenger": g["challenger"],
                    "trained_from": stats.get("base"),
                    "p_value": g["p_value"],
                    "reason": g["reason"],
                    "suites_champion": stats.get("suites_champion", {}),
                    "suites_challenger": stats.get("suites_challenger", {}),
                }
            )
    return out


class LoopRunner:
    """Retrain: `touchstone run --generations N` in a child process, its progress as events.

    Progress comes from the ledger (a row per finished step, a decision per generation), polled twice a
    second while the child runs; the child's output lines are events too. Subscribers (the server-sent
    event streams) each get a queue."""

    POLL_SECONDS = 0.5

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.proc: asyncio.subprocess.Process | None = None
        self.run: dict | None = None  # the current or last retrain: what was asked, progress, outcome
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self.subscribers: set[asyncio.Queue] = set()
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def snapshot(self) -> dict:
        return {"running": self.running, "run": self.run, "log": list(self.log)[-20:]}

    def publish(self, event: str, data: dict) -> None:
        for q in list(self.subscribers):
            q.put_nowait((event, data))

    async def start(self, generations: int) -> dict:
        from touchstone.loop.ledger import Ledger

        async with self._start_lock:
            if self.running:
                raise Conflict(
                    f"a retrain is already running (pid {self.proc.pid}, since "
                    f"{time.strftime('%H:%M:%S', time.localtime(self.run['started']))}); one loop per "
                    "workspace"
                )
            try:  # is another loop (a `touchstone run` in a terminal) holding the workspace?
                with self.ws.lock():
                    pass
            except UserError as e:
                raise Conflict(str(e)) from None
            gens = []
            if self.ws.ledger_path.exists():
                ledger = Ledger(self.ws.ledger_path)
                try:
                    gens = ledger.generations()
                finally:
                    ledger.close()
            finished = [g["gen"] for g in gens if g["gen"] > 0 and g["decision"]]
            open_gen = next((g["gen"] for g in gens if g["gen"] > 0 and not g["decision"]), None)
            bootstrapped = any(g["gen"] == 0 and g["decision"] for g in gens)
            first_gen = open_gen or max(finished, default=0) + 1  # as `touchstone.loop.run` picks it
            import touchstone

            # The child runs this very package, whatever the current directory.
            root = str(Path(touchstone.__file__).resolve().parent.parent)
            cmd = [
                sys.executable,
                "-m",
                "touchstone",
                "run",
                "--workspace",
                str(self.ws.root),
                "--generations",
                str(len(finished) + generations),
            ]
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
            self.proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )
            self.log.clear()
            self.run = {
                "generations": generations,
                "first_generation": first_gen,
                "bootstrap": not bootstrapped,
                "pid": self.proc.pid,
                "started": time.time(),
                "returncode": None,
                "error": None,
                "progress": read_progress(self.ws, first_gen, generations, not bootstrapped),
            }
            self.publish("started", self.snapshot())
            self._tasks = [
                asyncio.create_task(self._read_output(self.proc)),
                asyncio.create_task(self._watch(self.proc, self.run)),
            ]
            return self.snapshot()

    async def _read_output(self, proc) -> None:
        """The child's output as lines. Read in chunks, not with readline: a progress bar redrawn with
        carriage returns makes one endless line, which would overrun readline's limit and, unread, fill
        the pipe and stall the loop. Of such a line only its last frame is kept."""
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        pending = ""
        while chunk := await proc.stdout.read(1 << 16):
            *lines, pending = (pending + decode(chunk)).split("\n")
            pending = pending.rsplit("\r", 1)[-1]
            for line in lines:
                line = line.rstrip("\r").rsplit("\r", 1)[-1].rstrip()
                if line.strip():
                    self.log.append(line)
                    self.publish("log", {"line": line})
        if pending.strip():
            self.log.append(pending.rstrip())
            self.publish("log", {"line": pending.rstrip()})

    async def _watch(self, proc, run: dict) -> None:
        seen_decisions = {d["generation"] for d in run["progress"]["decisions"]}
        while True:
            exited = proc.returncode is not None
            progress = await asyncio.to_thread(
                read_progress, self.ws, run["first_generation"], run["generations"], run["bootstrap"]
            )
            if progress != run["progress"]:
                run["progress"] = progress
                self.publish("progress", progress)
            for d in progress["decisions"]:
                if d["generation"] not in seen_decisions:
                    seen_decisions.add(d["generation"])
                    self.publish("decision", d)
            if exited:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), self.POLL_SECONDS)
        await asyncio.gather(*self._tasks[:1], return_exceptions=True)  # the last output lines
        run["returncode"] = proc.returncode
        if proc.returncode != 0:
            run["error"] = self.log[-1] if self.log else f"touchstone run exited with status {proc.returncode}"
        self.publish("finished", self.snapshot())

    async def stop(self) -> None:
        """Server shutdown: SIGTERM (the loop finishes its step), then SIGKILL after 10 s (the loop is safe
        against that too: a restarted run resumes)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for t in self._tasks:
            t.cancel()
