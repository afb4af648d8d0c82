"""The parent's side of the sandbox: a pool of workers (`Sandbox`), each started on demand in the
chosen isolation and restarted when it dies or hangs; the results as `SandboxResult`.
"""

from __future__ import annotations

import atexit
import os
import queue
import select
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from touchstone.sandbox.isolation import choose_isolation, interpreter, worker_argv
from touchstone.sandbox.limits import DEFAULT_MAX_OUTPUT, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT
from touchstone.sandbox.wire import decode, recv, send


@dataclass
class SandboxResult:
    status: str  # run: ok | error | timeout; check: pass | syntax_error | runtime_error | timeout | wrong_answer
    message: str = ""  # the error text a person would want to see
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None  # the program's exit status (negative: killed by that signal)
    duration: float = 0.0
    truncated: bool = False  # stdout or stderr was cut at max_output
    value: object = None  # check: the plain value `check(candidate)` returned (used to record outputs)
    guarantees: tuple = ()

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "pass")


# Every worker is started from this one thread, which lives as long as the process. Bubblewrap's
# --die-with-parent is a parent-death signal, sent when the *thread* that started bwrap ends: a worker
# started by one of `check_many`'s threads was killed as that call returned, and every batch paid for
# starting the workers again (or lost a worker another thread was still using).
_starter = ThreadPoolExecutor(1, thread_name_prefix="sandbox-start")


class _WorkerProcess:
    """The parent's handle on one worker: start on demand, talk, kill and restart on trouble."""

    def __init__(self, isolation: str):
        self.isolation = isolation
        self.proc: subprocess.Popen | None = None
        self.new_root: str | None = None  # an empty host folder the namespaces worker mounts its root on

    def _start(self) -> None:
        if self.isolation == "namespaces":
            self.new_root = tempfile.mkdtemp(prefix="touchstone-sandbox-")
        argv = worker_argv(self.isolation, interpreter(), self.new_root)
        self.proc = _starter.submit(
            subprocess.Popen,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
            start_new_session=True,
            bufsize=0,
        ).result()

    def request(self, messages: list[dict], timeout: float) -> dict | None:
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        try:
            for m in messages:
                send(self.proc.stdin.fileno(), m)
            # The worker enforces the job's timeout itself; this is the backstop if the worker hangs.
            if not select.select([self.proc.stdout], [], [], timeout + 10)[0]:
                raise TimeoutError
            reply = recv(self.proc.stdout.fileno(), limit=1 << 30)
            if reply is None:
                raise EOFError
            return reply
        except (OSError, EOFError, TimeoutError, ValueError):
            self.close()
            return None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # a clean end: the worker leaves its loop and every level exits
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc.stdout.close()
            self.proc = None
        if self.new_root:
            os.rmdir(self.new_root)  # empty on the host: the root was mounted in the worker's namespace
            self.new_root = None


@dataclass
class Sandbox:
    """A pool of sandbox workers. Jobs are independent: each gets fresh processes and a wiped /tmp."""

    workers: int = 1
    isolation: str | None = None  # bubblewrap | namespaces; None: `choose_isolation()`
    _pool: list = field(default_factory=list, repr=False)
    _idle: object = field(default=None, repr=False)

    def __post_init__(self):
        self.isolation = choose_isolation(self.isolation)
        self._idle = queue.Queue()
        for _ in range(max(1, self.workers)):
            w = _WorkerProcess(self.isolation)
            self._pool.append(w)
            self._idle.put(w)

    @property
    def guarantees(self) -> tuple[str, ...]:
        """What holds for every job; the same in both isolations (the package's docstring says how)."""
        g = [
            "separate_processes",
            "new_session",
            "rlimits",
            "wall_timeout",
            "output_cap",
            "scrubbed_env",
            "no_network",
            "read_only_fs",
            "private_tmp",
            "disk_cap",
            "pid_namespace",
            "kill_all_job_processes",
            "no_capabilities",
            "not_dumpable",
        ]
        if os.getuid() == 0:
            g.append("unprivileged_uid")
        return tuple(g)

    def _job(self, messages: list[dict], timeout: float) -> SandboxResult:
        worker = self._idle.get()
        try:
            r = worker.request(messages, timeout)
            if r is None:  # the worker itself died or hung (infrastructure, not the job): once more
                r = worker.request(messages, timeout) or {
                    "status": "error",
                    "message": "the sandbox worker died or hung twice on this job",
                }
        finally:
            self._idle.put(worker)
        value = None
        if r.get("value") is not None:
            try:
                value = decode(r["value"])
            except (ValueError, TypeError):
                value = None
        return SandboxResult(
            status=r.get("status", "error"),
            message=r.get("message", ""),
            stdout=r.get("stdout", ""),
            stderr=r.get("stderr", ""),
            returncode=r.get("returncode"),
            duration=r.get("duration", 0.0),
            truncated=r.get("truncated", False),
            value=value,
            guarantees=self.guarantees,
        )

    def run(
        self,
        code: str,
        *,
        inputs: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> SandboxResult:
        """Run `code` as a script with `inputs` on stdin; status ok | error | timeout."""
        return self._job(
            [
                {
                    "mode": "run",
                    "program": code,
                    "stdin": inputs,
                    "timeout": timeout,
                    "memory_mb": memory_mb,
                    "max_output": max_output,
                }
            ],
            timeout,
        )

    def check(
        self,
        program: str,
        test: str,
        entry_point: str,
        *,
        prompt: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        memory_mb: int = DEFAULT_MEMORY_MB,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> SandboxResult:
        """Run `program`, then the trusted `test` (which defines `check(candidate)`) against its function
        `entry_point`. `prompt` is trusted code the test may use (HumanEval's helper functions)."""
        return self._job(
            [
                {
                    "mode": "check",
                    "program": program,
                    "entry_point": entry_point,
                    "timeout": timeout,
                    "memory_mb": memory_mb,
                    "max_output": max_output,
                },
                {"test": test, "prompt": prompt, "entry_point": entry_point},
            ],
            timeout,
        )

    def check_many(self, jobs: list[dict]) -> list[SandboxResult]:
        """`check(**job)` for each job, spread over the workers."""
        if len(jobs) <= 1 or len(self._pool) == 1:
            return [self.check(**job) for job in jobs]
        with ThreadPoolExecutor(len(self._pool)) as ex:
            return list(ex.map(lambda job: self.check(**job), jobs))

    def close(self) -> None:
        for w in self._pool:
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox(workers: int | None = None) -> Sandbox:
    """One process-wide pool (one worker per CPU), closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sandbox(workers=workers or min(4, os.cpu_count() or 1))
            atexit.register(_shared.close)
        return _shared


def run_python(code: str, **limits) -> SandboxResult:
    """Run `code` once in a fresh sandbox, with `Sandbox.run`'s keywords (inputs, timeout, memory_mb,
    max_output) and its defaults."""
    with Sandbox(workers=1) as box:
        return box.run(code, **limits)
