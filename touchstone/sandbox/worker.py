"""The sandbox's worker: this script, run by a bare interpreter (`python -I -S worker.py --tmp /tmp`,
with `--switch-uid` as root, `--new-root DIR --layout JSON` in the namespaces isolation, `--probe` to
test the limits) inside fresh namespaces, reads one job after another on stdin and answers each with
one result on stdout. For every job it forks the program and test processes (`jobs.py`) and afterwards
kills every other process of its PID namespace and empties its scratch space.

Touchstone is not importable inside the sandbox and `python -I` leaves a script's own folder off
sys.path, so this script puts its folder there itself and imports its siblings by plain name; the
parent binds them beside it (`isolation.WORKER_FILES`).
"""

from __future__ import annotations

import ctypes  # noqa: F401 - imported once here, before any job, not in every job process
import fcntl  # noqa: F401 - as ctypes
import json
import os
import resource  # noqa: F401 - as ctypes
import select
import shutil
import signal
import sys
import time
import traceback  # noqa: F401 - as ctypes

sys.dont_write_bytecode = True  # the worker writes no file of its own, not even its siblings' bytecode
sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # after the standard library, shadowing none of it

from jobs import format_exc, program_main, test_main  # noqa: E402
from limits import (  # noqa: E402
    DEFAULT_MAX_OUTPUT,
    PROGRAM_UID,
    TEST_UID,
    not_dumpable,
    others_can_import_stdlib,
    prepare_worker,
    redirect,
    set_limits,
)
from root import build_root  # noqa: E402
from wire import recv, send  # noqa: E402


def _read_capped(path: str, cap: int) -> tuple[str, bool]:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError:
        return "", False
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


class _Worker:
    """The loop inside the sandbox: one job message in, one result message out."""

    def __init__(self, tmp: str, switch_uid: bool):
        self.tmp = tmp
        # As real root the jobs become PROGRAM_UID and TEST_UID (RLIMIT_NPROC does not bind root). As
        # another user there is no other uid to become: the jobs keep the worker's (the user's own, or
        # uid 0 of a user namespace) and lose every capability instead (`limits.set_limits`).
        self.switch_uid = switch_uid
        if switch_uid and not others_can_import_stdlib():
            raise SystemExit("the sandbox's interpreter is not readable by its unprivileged uids")
        self.count = 0
        self.statuses: dict[int, int] = {}  # exit statuses of reaped job processes
        # The job processes' environment, all but its two paths (`run` sets them for each job): set in
        # the worker, which runs nothing else, so that each job process inherits it ready-made.
        os.environ.clear()
        os.environ.update({"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"})
        self.devnull = os.open("/dev/null", os.O_RDWR)  # the test process's stdio, in every job

    def serve(self) -> None:
        while (job := recv(0, limit=1 << 30)) is not None:
            send(1, self.run(job))

    def run(self, job: dict) -> dict:
        self.count += 1
        workdir = os.path.join(self.tmp, f"job{self.count}")
        os.mkdir(workdir, 0o700)
        if self.switch_uid:
            os.chown(workdir, PROGRAM_UID, PROGRAM_UID)
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir
        start = time.monotonic()
        mode, timeout = job["mode"], float(job["timeout"])
        memory_mb = int(job["memory_mb"])
        out_path, err_path = os.path.join(workdir, ".stdout"), os.path.join(workdir, ".stderr")
        opened: list[int] = []  # fds of this job the worker opened: closed once its processes hold theirs
        pids = []
        try:
            if job.get("stdin"):
                with open(os.path.join(workdir, ".stdin"), "w", encoding="utf-8") as f:
                    f.write(job["stdin"])
                opened.append(os.open(f.name, os.O_RDONLY))
            else:
                opened.append(os.dup(self.devnull))  # no input: end of file at once, as from an empty file
            # The program's stdio is opened here, not in its process: the job processes only move fds.
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            opened += [os.open(out_path, flags, 0o600), os.open(err_path, flags, 0o600)]
            if self.switch_uid:
                for fd in opened[1:]:
                    os.fchown(fd, PROGRAM_UID, PROGRAM_UID)
            stdio = opened[:3]
            to_prog_r, to_prog_w = os.pipe()
            opened += [to_prog_r, to_prog_w]
            from_prog_r, from_prog_w = os.pipe()
            opened += [from_prog_r, from_prog_w]
            program = os.fork()
            if program == 0:
                self._enter_job(
                    workdir,
                    stdio,
                    {3: to_prog_r, 4: from_prog_w},
                    memory_mb,
                    timeout,
                    PROGRAM_UID,
                )
                program_main(job, mode)
            pids.append(program)
            if mode == "check":
                test_job = recv(0, limit=1 << 30)  # read only now: the program process never holds it
                result_r, result_w = os.pipe()
                tester = os.fork()
                if tester == 0:
                    self._enter_job(
                        workdir,
                        [self.devnull] * 3,
                        {3: from_prog_r, 4: to_prog_w, 5: result_w},
                        max(memory_mb, 256),
                        timeout,
                        TEST_UID,
                    )
                    try:
                        report = test_main(test_job)
                    except BaseException as e:  # noqa: BLE001
                        report = {"status": "test_error", "message": format_exc(e)}
                    send(5, report)
                    os._exit(0)
                pids.append(tester)
                os.close(result_w)
            _close(opened)
            watched = pids[-1]  # the test process in check mode, the program in run mode
            finished = self._wait(watched, start + timeout)
            result = {"duration": time.monotonic() - start}
            if mode == "check":
                report = recv(result_r) if finished else None
                os.close(result_r)
                result.update(
                    report
                    or {
                        "status": "timeout" if not finished else "test_error",
                        "message": f"no result within the time limit of {timeout:g} s"
                        if not finished
                        else "the test process died",
                    }
                )
            statuses = self._kill_all(pids)
            code = statuses.get(program)
            result["returncode"] = code
            if mode == "run":
                result["status"] = "timeout" if not finished else ("ok" if code == 0 else "error")
            if code == -signal.SIGXCPU and result.get("status") != "pass":
                result["status"], result["message"] = "timeout", "CPU time limit exceeded"
            elif code == -signal.SIGXFSZ:
                result["status"] = "error" if mode == "run" else "runtime_error"
                result["message"] = "output or file size limit exceeded"
            if result["status"] == "timeout" and not result.get("message"):
                result["message"] = f"no result within the time limit of {timeout:g} s"
            cap = int(job.get("max_output", DEFAULT_MAX_OUTPUT))
            result["stdout"], t1 = _read_capped(out_path, cap)
            result["stderr"], t2 = _read_capped(err_path, cap)
            result["truncated"] = t1 or t2
            if mode == "run" and result["status"] == "error" and not result.get("message"):
                result["message"] = result["stderr"][-2000:]
            return result
        finally:
            self._kill_all(pids)  # again, in case the job failed half-way
            _close(opened)  # left open only when the job failed half-way
            for scratch in (self.tmp, "/dev/shm"):  # the job may have written anywhere it could
                _empty(scratch)

    def _enter_job(self, workdir, stdio, keep, memory_mb, timeout, uid) -> None:
        os.setsid()
        redirect(keep, *stdio)
        os.chdir(workdir)  # the environment comes from the worker: HOME and TMPDIR are workdir
        set_limits(memory_mb, timeout, uid if self.switch_uid else None)

    @staticmethod
    def _wait(pid: int, deadline: float) -> bool:
        """Wait until the process exits (True) or the deadline passes (False); it is not reaped here."""
        fd = os.pidfd_open(pid)
        try:
            return bool(select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0])
        finally:
            os.close(fd)

    def _kill_all(self, pids: list[int]) -> dict[int, int]:
        """Kill every process in the sandbox's PID namespace except the worker, which is its init: a
        `setsid` grandchild dies too. Reaps the worker's children; returns their exit statuses
        (negative: the signal)."""
        deadline = time.monotonic() + 5
        again = False
        while not again or time.monotonic() < deadline:
            try:
                os.kill(-1, signal.SIGKILL)  # every process we may signal but ourselves (init)
            except ProcessLookupError:
                break  # nothing left, not even a zombie: usually at the second round, at once
            if again:
                time.sleep(0.001)  # a stray was still dying when we last reaped: give it a moment
            again = True
            for pid in pids:  # our own children: wait for them to die, no polling
                if pid not in self.statuses:
                    try:
                        self.statuses[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    except ChildProcessError:
                        pass
            self._reap()  # strays, reparented to us as the namespace's init
        self._reap()
        statuses = {p: self.statuses[p] for p in pids if p in self.statuses}
        self.statuses.clear()  # strays' statuses are of no use, and would pile up
        return statuses

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.statuses[pid] = os.waitstatus_to_exitcode(status)


def _close(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


def _empty(folder: str) -> None:
    """Delete everything inside `folder` (the sandbox's own scratch space), keeping the folder."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


# Standard modules the programs and tests commonly import (HumanEval: typing above all, then math,
# copy, string, collections, re, hashlib). Imported once by the worker, they are already loaded in every
# job process it forks, instead of each job importing them again. Every job gets its own copy of them
# (fork), so what one job does to a module never reaches another. Not `random`: it reseeds itself in
# every fork, which would cost every job more than the few that import it save.
PRELOAD = ("typing", "math", "copy", "string", "collections", "re", "hashlib", "itertools", "functools")


def _preload() -> None:
    import gc
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # What the worker holds from now on stays out of the collector's reach: no collection, in a job
    # process or in the worker, walks (and so writes to, and copies) the pages the two share.
    gc.collect()
    gc.freeze()


def _probe(switch_uid: bool) -> None:
    """Exit 0 only if a job process can take every limit `prepare_worker` and `set_limits` set (see
    `isolation.usable`)."""
    pid = os.fork()
    if pid == 0:
        try:
            set_limits(64, 1, PROGRAM_UID if switch_uid else None)
        except BaseException:  # noqa: BLE001 - any failure means: not usable
            os._exit(1)
        os._exit(0)
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))


if __name__ == "__main__":  # started by the parent's `pool._WorkerProcess`, inside the sandbox
    _args = sys.argv[1:]
    not_dumpable()  # the worker holds each job's test: nothing may read its memory or its pipes
    if "--new-root" in _args:
        build_root(_args[_args.index("--new-root") + 1], json.loads(_args[_args.index("--layout") + 1]))
    prepare_worker()
    if "--probe" in _args:
        _probe("--switch-uid" in _args)
    _preload()
    _Worker(tmp=_args[_args.index("--tmp") + 1], switch_uid="--switch-uid" in _args).serve()
