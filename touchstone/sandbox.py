"""Run untrusted Python, and decide from the outside whether it passed its tests.

    from touchstone.sandbox import Sandbox, run_python
    run_python("print(6 * 7)").stdout                      # '42\\n'
    with Sandbox(workers=2) as box:                         # long-lived workers for throughput
        box.check(program, test, entry_point).status       # pass | syntax_error | runtime_error | ...

How it works. A *worker* is this very file run as a script by a bare interpreter (`python -I -S`, no
site-packages, empty environment) inside fresh namespaces. For every job the worker forks fresh
processes from itself (fast: no interpreter start-up) and, after the job, kills every other process in
its PID namespace and empties its scratch space, so no state survives from one job to the next:

- the *program* process runs the untrusted code and then answers calls to its function over a pipe;
  every return value is encoded by exact type (None, bool, int, float, str, bytes, list, tuple, set,
  frozenset, dict); anything else (an object whose `__eq__` always says yes) cannot cross the pipe;
- the *test* process runs the trusted test (`check(candidate)`, HumanEval's shape) with `candidate` a
  proxy that sends the arguments to the program process and decodes the answer into plain values.
  The verdict is the test process's report on a pipe made after the program process exists, relayed
  by the worker. `sys.exit(0)` before the tests, a forged "passed" on stdout, patching the harness or
  walking frames with `sys._getframe`/`gc` all happen inside the program process, whose only channel
  back is plain values; they end as a failure.

Two isolations, one set of guarantees (`Sandbox.guarantees`, also on every result). `bubblewrap` is
used when `bwrap` works; `namespaces` needs only util-linux `unshare` (on nearly every Linux) and builds
the same root itself (`_build_root`). $TOUCHSTONE_SANDBOX=bubblewrap|namespaces picks one. Where
neither works the sandbox refuses to start, in one line that says what to install: there is no weaker
fallback, because its verdicts become training data. In both:
  - new PID, mount, network, IPC and UTS namespaces (and a user namespace when not run as root): no
    network at all, not even loopback or the host's abstract sockets; only the sandbox's processes
    are visible or can be signalled, and every process of a job, `setsid` grandchildren included, is
    killed after it;
  - a read-only root holding only /usr, /bin, /lib*, /sbin and the interpreter's prefix (under
    world-searchable parents), a new /proc, five devices, and a size-capped private tmpfs at /tmp
    and /dev/shm, emptied after each job: nothing of /etc, the home directory, the checkout, the
    host's /tmp or /dev/shm; the tmpfs sizes cap the job's whole disk use;
  - job processes hold no capabilities and cannot gain any (bounding set dropped, no_new_privs, so
    setuid programs do not elevate), and are not dumpable, like the worker: no ptrace, no
    /proc/PID/mem or /proc/PID/fd of one process by another, so the program can neither read the
    test's expected values nor write into the verdict's pipe;
  - as root the program runs as uid 65534 and the test as uid 65533 (where RLIMIT_NPROC binds); as
    another user both keep that user's uid, mapped to 0 of a user namespace, with no capabilities;
  - rlimits on CPU time, address space, processes, file size and open files; a wall-clock timeout
    after which every process of the job is killed; stdout/stderr cut at `max_output` bytes; an empty
    environment; the worker dies with its parent (bubblewrap: a parent-death signal; namespaces: it
    leaves when its parent's pipe closes, and `unshare --kill-child` takes the namespace with it).
Never guaranteed: that the program cannot read bytes the worker freed during earlier jobs (it is forked
  from the worker; the current job's test is read only after the program process exists); resistance
  to kernel exploits (there is no seccomp filter); CPU fairness between concurrent jobs.
"""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 512
DEFAULT_MAX_OUTPUT = 64 * 1024
MAX_MESSAGE = 8 << 20  # bytes of one encoded return value / job message
NPROC = 32  # processes of the sandbox's uid (a fork bomb stops here)
NOFILE = 64
FSIZE = 16 << 20  # largest file the program may write (stdout included)
TMPFS_BYTES = 64 << 20  # the job's whole disk: /tmp
SHM_BYTES = 8 << 20  # and a private /dev/shm
PROGRAM_UID, TEST_UID = 65534, 65533
SANDBOX_DIR = "/sandbox"  # where the worker script is bound inside bubblewrap


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


# ------------------------------------------------------------------------------ wire format (both sides)
def _send(fd: int, obj) -> None:
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data) :]


def _recv_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(fd: int, limit: int = MAX_MESSAGE):
    """The next message, or None at end of file; a message over `limit` bytes is a ValueError."""
    head = _recv_exact(fd, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n > limit:
        raise ValueError(f"message of {n} bytes is over the limit of {limit}")
    body = _recv_exact(fd, n)
    return None if body is None else json.loads(body.decode("utf-8"))


class Unsupported(TypeError):
    """A value of a type that cannot cross between the program and the test."""


def encode(value, depth: int = 0):
    """Plain values by exact type (subclasses refused, so no object can lie about equality)."""
    if depth > 100:
        raise Unsupported("value nested more than 100 levels deep")
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return {"f": repr(value)}
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t in (tuple, set, frozenset):
        return {{tuple: "t", set: "s", frozenset: "fs"}[t]: [encode(v, depth + 1) for v in value]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if t is bytes:
        return {"b": value.hex()}
    raise Unsupported(f"a value of type {t.__name__} cannot be checked (only plain data can)")


def decode(obj):
    """The inverse of `encode`; builds only plain built-in values."""
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is list:
        return [decode(v) for v in obj]
    if type(obj) is dict and len(obj) == 1:
        ((tag, body),) = obj.items()
        if tag == "f":
            return float(body)
        if tag == "t":
            return tuple(decode(v) for v in body)
        if tag == "s":
            return {decode(v) for v in body}
        if tag == "fs":
            return frozenset(decode(v) for v in body)
        if tag == "d":
            return {decode(k): decode(v) for k, v in body}
        if tag == "b":
            return bytes.fromhex(body)
    raise ValueError("malformed value from the program")


@functools.lru_cache(maxsize=1)
def _others_can_import_stdlib() -> bool:
    """Can a uid other than ours read this interpreter's standard library? (Asked for every job's
    result, so the walk up the directories happens once per process.)"""
    return _searchable_by_others(os.path.dirname(os.path.realpath(os.__file__)))


def _searchable_by_others(path: str) -> bool:
    """Is every directory from `path` up to / searchable by others (mode o+x)? Without bubblewrap the
    worker sees the real filesystem, where an interpreter under /root (mode 0700; pyenv's default
    place for root) is out of reach of the dropped uid, and the untrusted code would fail at its first
    `import typing`. Bubblewrap binds the interpreter under searchable parents."""
    import stat

    while True:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


# ------------------------------------------------------------------------------------ inside the worker
def _limits(memory_mb: int, cpu_s: float, uid: int | None) -> None:
    """Drop privileges, then cap resources. Runs in a freshly forked job process."""
    import resource

    _drop_bounding_set()  # while CAP_SETPCAP is still held: no exec can regain a capability later
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another uid: every capability is dropped too
    _drop_capabilities()  # where the uid stays (the root of a user namespace), drop them explicitly
    _not_dumpable()
    cpu = int(cpu_s) + 1
    for res, value in (
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, memory_mb << 20),
        (resource.RLIMIT_NPROC, NPROC),
        (resource.RLIMIT_FSIZE, FSIZE),
        (resource.RLIMIT_NOFILE, NOFILE),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, (value, value))


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38


def _drop_bounding_set() -> None:
    libc = _libc()
    for cap in range(64):  # past the kernel's last capability prctl fails with EINVAL: harmless
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def _drop_capabilities() -> None:
    """No capabilities at all, and no way to gain any (no_new_privs: setuid files and file
    capabilities are ignored by exec). Without this, a job left as uid 0 of a user namespace would hold
    CAP_SYS_PTRACE over the test process beside it."""
    import ctypes

    libc = _libc()
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    empty = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: two 32-bit words each
    _check(libc.capset(header, empty), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def _not_dumpable() -> None:
    """No ptrace and no /proc/PID/mem or /proc/PID/fd for other processes without CAP_SYS_PTRACE,
    which no job process holds."""
    _check(_libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _redirect(keep: dict[int, int], stdin: int, stdout: int, stderr: int) -> None:
    """In a job process: stdio to the given fds, `keep` moved to fixed numbers, every other fd closed."""
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    for target, fd in keep.items():
        os.dup2(fd, target)
    os.closerange(max(keep, default=2) + 1, 1 << 16)


def _format_exc(e: BaseException) -> str:
    import traceback

    lines = traceback.format_exception(type(e), e, e.__traceback__)
    text = "".join(lines[-4:]) if len(lines) > 4 else "".join(lines)
    return text.strip()[-2000:]


def _program_main(job: dict, mode: str) -> None:
    """The untrusted side: run the program; in check mode, then answer calls on fds 3 (in) and 4 (out)."""
    try:
        code = compile(job["program"], "<program>", "exec")
    except (SyntaxError, ValueError) as e:
        if mode == "check":
            _send(4, {"syntax_error": f"{type(e).__name__}: {e}"})
        else:
            print(_format_exc(e), file=sys.stderr)
        os._exit(1)
    ns = {"__name__": "__main__" if mode == "run" else "candidate", "__builtins__": __builtins__}
    try:
        exec(code, ns)
    except SystemExit as e:
        sys.stdout.flush()
        if mode == "run":
            os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
        os._exit(0)  # the test process sees the pipe close before its calls were answered
    except BaseException as e:  # noqa: BLE001 - any failure of untrusted code is reported, not raised
        if mode == "check":
            _send(4, {"error": _format_exc(e)})
        else:
            print(_format_exc(e), file=sys.stderr)
        sys.stdout.flush()
        os._exit(1)
    if mode == "run":
        sys.stdout.flush()
        os._exit(0)
    _send(4, {"ready": True})
    while (request := _recv(3)) is not None:
        fn = ns.get(job["entry_point"])
        try:
            if not callable(fn):
                raise NameError(f"the program defines no function {job['entry_point']!r}")
            args = decode(request["args"])
            kwargs = {k: decode(v) for k, v in request["kwargs"].items()}
            reply = {"value": encode(fn(*args, **kwargs))}
        except Unsupported as e:
            reply = {"unsupported": str(e)}
        except BaseException as e:  # noqa: BLE001
            reply = {"raised": type(e).__name__, "message": _format_exc(e)}
        sys.stdout.flush()
        _send(4, reply)
    os._exit(0)


class CandidateError(Exception):
    """The program raised, died or answered with something that is not plain data."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class _Candidate:
    """Stands in for the program's function inside the test process: plain values in, plain values out."""

    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd = rfd, wfd
        self.last = "nothing"  # repr of the latest answer, for the evidence

    def __call__(self, *args, **kwargs):
        try:
            _send(self.wfd, {"args": encode(list(args)), "kwargs": {k: encode(v) for k, v in kwargs.items()}})
        except BrokenPipeError:
            raise CandidateError("runtime_error", "the program exited before its tests finished") from None
        reply = _recv(self.rfd)
        if reply is None:
            raise CandidateError("runtime_error", "the program exited before its tests finished")
        if "value" in reply:
            value = decode(reply["value"])
            self.last = repr(value)[:500]
            return value
        if "unsupported" in reply:
            raise CandidateError("wrong_answer", reply["unsupported"])
        raise CandidateError("runtime_error", str(reply.get("message", "the program raised an exception")))


def _test_line(e: BaseException, test: str) -> str:
    """'test line N: <source>' for the innermost line of the test where `e` was raised."""
    tb, lineno = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<test>":
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if lineno is None:
        return "the test"
    lines = test.splitlines()
    return f"test line {lineno}: `{lines[lineno - 1].strip()}`" if lineno <= len(lines) else f"test line {lineno}"


def _test_main(job: dict) -> dict:
    """The trusted side: run the test against the proxy; the returned dict is the verdict."""
    first = _recv(3)
    if first is None:
        return {"status": "runtime_error", "message": "the program exited before its tests started"}
    if "syntax_error" in first:
        return {"status": "syntax_error", "message": str(first["syntax_error"])}
    if "error" in first:
        return {"status": "runtime_error", "message": str(first["error"])}
    ns = {"__name__": "touchstone_test"}
    candidate = _Candidate(3, 4)
    try:
        exec(compile(job.get("prompt") or "", "<prompt>", "exec"), ns)
        ns[job["entry_point"]] = candidate  # tests may call the function by its name, too
        exec(compile(job["test"], "<test>", "exec"), ns)
    except BaseException as e:  # noqa: BLE001
        return {"status": "test_error", "message": "the test itself failed to load: " + _format_exc(e)}
    try:
        value = ns["check"](candidate)
    except CandidateError as e:
        return {"status": e.reason, "message": str(e)}
    except BaseException as e:  # noqa: BLE001 - AssertionError, or e.g. comparing None with a number
        what = "failed" if isinstance(e, AssertionError) else f"raised {type(e).__name__}: {e}"
        return {
            "status": "wrong_answer",
            "message": f"{_test_line(e, job['test'])} {what}; the last call returned {candidate.last}"[:2000],
        }
    try:
        return {"status": "pass", "value": encode(value)}
    except Unsupported:
        return {"status": "pass", "value": None}


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
        # uid 0 of a user namespace) and lose every capability instead (`_drop_capabilities`).
        self.switch_uid = switch_uid
        if switch_uid and not _others_can_import_stdlib():
            raise SystemExit("the sandbox's interpreter is not readable by its unprivileged uids")
        self.count = 0
        self.statuses: dict[int, int] = {}  # exit statuses of reaped job processes

    def serve(self) -> None:
        while (job := _recv(0, limit=1 << 30)) is not None:
            _send(1, self.run(job))

    def run(self, job: dict) -> dict:
        self.count += 1
        workdir = os.path.join(self.tmp, f"job{self.count}")
        os.mkdir(workdir, 0o700)
        if self.switch_uid:
            os.chown(workdir, PROGRAM_UID, PROGRAM_UID)
        start = time.monotonic()
        mode, timeout = job["mode"], float(job["timeout"])
        memory_mb = int(job["memory_mb"])
        out_path, err_path, in_path = (os.path.join(workdir, n) for n in (".stdout", ".stderr", ".stdin"))
        with open(in_path, "w", encoding="utf-8") as f:
            f.write(job.get("stdin") or "")
        to_prog_r, to_prog_w = os.pipe()
        from_prog_r, from_prog_w = os.pipe()
        pids = []
        try:
            program = os.fork()
            if program == 0:
                self._enter_job(
                    workdir,
                    in_path,
                    out_path,
                    err_path,
                    {3: to_prog_r, 4: from_prog_w},
                    memory_mb,
                    timeout,
                    PROGRAM_UID,
                )
                _program_main(job, mode)
            pids.append(program)
            if mode == "check":
                test_job = _recv(0, limit=1 << 30)  # read only now: the program process never holds it
                result_r, result_w = os.pipe()
                tester = os.fork()
                if tester == 0:
                    self._enter_job(
                        workdir,
                        "/dev/null",
                        "/dev/null",
                        "/dev/null",
                        {3: from_prog_r, 4: to_prog_w, 5: result_w},
                        max(memory_mb, 256),
                        timeout,
                        TEST_UID,
                    )
                    try:
                        report = _test_main(test_job)
                    except BaseException as e:  # noqa: BLE001
                        report = {"status": "test_error", "message": _format_exc(e)}
                    _send(5, report)
                    os._exit(0)
                pids.append(tester)
                os.close(result_w)
            for fd in (to_prog_r, to_prog_w, from_prog_r, from_prog_w):
                os.close(fd)
            watched = pids[-1]  # the test process in check mode, the program in run mode
            finished = self._wait(watched, start + timeout)
            result = {"duration": time.monotonic() - start}
            if mode == "check":
                report = _recv(result_r) if finished else None
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
            for scratch in (self.tmp, "/dev/shm"):  # the job may have written anywhere it could
                _empty(scratch)

    def _enter_job(self, workdir, stdin_path, out_path, err_path, keep, memory_mb, timeout, uid) -> None:
        os.setsid()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fds = [os.open(stdin_path, os.O_RDONLY), os.open(out_path, flags, 0o600), os.open(err_path, flags, 0o600)]
        if self.switch_uid and out_path != "/dev/null":
            for fd in fds[1:]:
                os.fchown(fd, uid, uid)
        _redirect(keep, *fds)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"})
        _limits(memory_mb, timeout, uid if self.switch_uid else None)

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
        while time.monotonic() < deadline:
            try:
                os.kill(-1, signal.SIGKILL)  # every process we may signal but ourselves (init)
            except ProcessLookupError:
                break  # nothing left, not even a zombie
            for pid in pids:  # our own children: wait for them to die, no polling
                if pid not in self.statuses:
                    try:
                        self.statuses[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    except ChildProcessError:
                        pass
            self._reap()  # strays, reparented to us as the namespace's init
            time.sleep(0.001)
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


def _build_root(new_root: str, layout: list[list[str]]) -> None:
    """In the namespaces isolation, before the worker serves: as root of its fresh mount namespace,
    mount a read-only root holding only `layout`, a new /proc, five devices and two size-capped tmpfs
    (/tmp, /dev/shm), then pivot into it and detach the host's root, as bubblewrap does."""
    libc = _libc()

    def mount(source, target, fstype, flags, data=None):
        args = [None if x is None else x.encode() for x in (source, target, fstype)]
        _check(libc.mount(*args, flags, None if data is None else data.encode()), f"mount {target}")

    def bind(source, target, read_only=True):
        mount(source, target, None, MS_BIND | MS_REC)
        if read_only:  # a user namespace may not clear the host mount's flags: keep them, add read-only
            host = os.statvfs(target).f_flag
            kept = host & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
            kept |= MS_RELATIME if host & os.ST_RELATIME else 0
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)

    def inside(path):
        return os.path.join(new_root, path.lstrip("/"))

    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the host
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for kind, path, *target in layout:
        if kind == "symlink":
            os.symlink(target[0], inside(path))
        else:
            os.makedirs(inside(path), 0o755, exist_ok=True)
            if kind == "ro-bind":
                bind(path, inside(path))
    os.mkdir(inside("/proc"), 0o755)
    mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # of the new PID namespace
    os.mkdir(inside("/dev"), 0o755)
    for name in DEVICES:
        open(inside(f"/dev/{name}"), "w").close()
        bind(f"/dev/{name}", inside(f"/dev/{name}"), read_only=False)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, inside(f"/dev/{name}"))
    for scratch, size in (("/tmp", TMPFS_BYTES), ("/dev/shm", SHM_BYTES)):
        os.mkdir(inside(scratch), 0o755)
        mount("tmpfs", inside(scratch), "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={size}")
    os.chdir(new_root)
    _check(libc.pivot_root(b".", b"."), "pivot_root")  # the host's root now lies over ours ...
    _check(libc.umount2(b".", MNT_DETACH), "umount the host's root")  # ... and is gone
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


# --------------------------------------------------------------------------------------- the parent side
def _interpreter() -> str:
    """The base interpreter of this environment (the sandbox needs no site-packages)."""
    candidate = os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    return candidate if os.path.exists(candidate) else os.path.realpath(sys.executable)


ISOLATIONS = ("bubblewrap", "namespaces")  # in order of preference
SETTING = "TOUCHSTONE_SANDBOX"  # auto (the default) | bubblewrap | namespaces
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
DEVICES = ("null", "zero", "full", "random", "urandom")


def _layout(python: str) -> list[list[str]]:
    """The host paths a worker sees, read-only, in either isolation: the system's programs and
    libraries, and this interpreter's prefix under world-searchable parents (so the unprivileged uids
    can import the standard library even from an interpreter under /root). Nothing else of the host:
    no /etc, no home directory, no checkout, no /dev/shm."""
    layout = [["ro-bind", "/usr"]]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            layout.append(["symlink", top, os.readlink(top)])
        elif os.path.isdir(top):
            layout.append(["ro-bind", top])
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if not prefix.startswith("/usr/"):
        parts = prefix.strip("/").split("/")
        layout += [["dir", "/" + "/".join(parts[:i])] for i in range(1, len(parts))]
        layout.append(["ro-bind", prefix])
    return layout


def _bwrap_argv(bwrap: str, python: str) -> list[str]:
    # --as-pid-1: the worker is the namespace's init. Bubblewrap's own init would be a process of the
    # jobs' uid (when not root) that is dumpable and holds the pipes to the parent: a job could write a
    # verdict into them through /proc/1/fd.
    argv = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--as-pid-1",
    ]
    if os.getuid() == 0:
        # Privileged mode: no user namespace, so the job processes can become a real unprivileged uid
        # (rlimits such as RLIMIT_NPROC do not bind root). The worker keeps only what it needs.
        argv += ["--cap-drop", "ALL"]
        for cap in ("SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER"):
            argv += ["--cap-add", f"CAP_{cap}"]
    else:
        argv += ["--unshare-user"]
    for kind, path, *target in _layout(python):
        argv += {
            "ro-bind": ["--ro-bind", path, path],
            "symlink": ["--symlink", *target, path],
            "dir": ["--perms", "0755", "--dir", path],
        }[kind]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(SHM_BYTES),
        "--tmpfs",
        "/dev/shm",
        "--perms",
        "0755",
        "--size",
        str(TMPFS_BYTES),
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        os.path.abspath(__file__),
        f"{SANDBOX_DIR}/worker.py",
        "--chdir",
        "/tmp",
        python,
        "-I",
        "-S",
        f"{SANDBOX_DIR}/worker.py",
    ]
    return argv


def _namespaces_argv(unshare: str, python: str, new_root: str) -> list[str]:
    """util-linux `unshare` makes the namespaces (a user namespace too when we are not root); the
    worker then builds its root from `_layout` itself (`_build_root`), as bubblewrap would."""
    argv = [unshare, "--fork", "--kill-child", "--pid", "--mount", "--net", "--ipc", "--uts"]
    if os.getuid() != 0:
        argv += ["--user", "--map-root-user"]
    return argv + [
        python,
        "-I",
        "-S",
        os.path.abspath(__file__),
        "--new-root",
        new_root,
        "--layout",
        json.dumps(_layout(python)),
    ]


def _worker_argv(isolation: str, python: str, new_root: str | None) -> list[str]:
    tool = shutil.which("bwrap" if isolation == "bubblewrap" else "unshare")
    if tool is None:
        raise FileNotFoundError(isolation)
    # An absolute path: the worker starts with PATH=/usr/bin:/bin, where a bwrap found elsewhere is not.
    argv = _bwrap_argv(tool, python) if isolation == "bubblewrap" else _namespaces_argv(tool, python, new_root)
    return argv + ["--tmp", "/tmp"] + (["--switch-uid"] if os.getuid() == 0 else [])


@functools.cache
def usable(isolation: str) -> bool:
    """Can this isolation start a worker here, with every limit it promises? Asked once per process:
    a worker builds its root, forks one job process through `_limits`, and exits."""
    new_root = tempfile.mkdtemp(prefix="touchstone-sandbox-")
    try:
        argv = _worker_argv(isolation, _interpreter(), new_root) + ["--probe"]
        return (
            subprocess.run(
                argv, capture_output=True, timeout=30, cwd="/", env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        os.rmdir(new_root)


def choose_isolation(requested: str | None = None) -> str:
    """The isolation to use: `requested`, else $TOUCHSTONE_SANDBOX, else the best one this machine has.
    There is no weaker fallback: untrusted code never runs outside namespaces."""
    from touchstone.errors import UserError  # here, not at the top: this file also runs as the bare worker

    wanted = requested or os.environ.get(SETTING) or "auto"
    if wanted not in ("auto", *ISOLATIONS):
        raise UserError(f"{SETTING}={wanted}: expected auto, bubblewrap or namespaces")
    for isolation in ISOLATIONS:
        if wanted in ("auto", isolation) and usable(isolation):
            return isolation
    what = "no isolation" if wanted == "auto" else f"{wanted} isolation"
    raise UserError(
        f"the code sandbox has {what} on this machine, so untrusted code cannot run: install "
        "bubblewrap (apt-get install bubblewrap) or allow user namespaces "
        "(sysctl kernel.unprivileged_userns_clone=1)"
    )


class _WorkerProcess:
    """The parent's handle on one worker: start on demand, talk, kill and restart on trouble."""

    def __init__(self, isolation: str):
        self.isolation = isolation
        self.proc: subprocess.Popen | None = None
        self.new_root: str | None = None  # an empty host folder the namespaces worker mounts its root on

    def _start(self) -> None:
        if self.isolation == "namespaces":
            self.new_root = tempfile.mkdtemp(prefix="touchstone-sandbox-")
        argv = _worker_argv(self.isolation, _interpreter(), self.new_root)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
            start_new_session=True,
            bufsize=0,
        )

    def request(self, messages: list[dict], timeout: float) -> dict | None:
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        try:
            for m in messages:
                _send(self.proc.stdin.fileno(), m)
            # The worker enforces the job's timeout itself; this is the backstop if the worker hangs.
            if not select.select([self.proc.stdout], [], [], timeout + 10)[0]:
                raise TimeoutError
            reply = _recv(self.proc.stdout.fileno(), limit=1 << 30)
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
        import queue

        self.isolation = choose_isolation(self.isolation)
        self._idle = queue.Queue()
        for _ in range(max(1, self.workers)):
            w = _WorkerProcess(self.isolation)
            self._pool.append(w)
            self._idle.put(w)

    @property
    def guarantees(self) -> tuple[str, ...]:
        """What holds for every job; the same in both isolations (the module docstring says how)."""
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
        from concurrent.futures import ThreadPoolExecutor

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
            import atexit

            _shared = Sandbox(workers=workers or min(4, os.cpu_count() or 1))
            atexit.register(_shared.close)
        return _shared


def run_python(code: str, **limits) -> SandboxResult:
    """Run `code` once in a fresh sandbox, with `Sandbox.run`'s keywords (inputs, timeout, memory_mb,
    max_output) and its defaults."""
    with Sandbox(workers=1) as box:
        return box.run(code, **limits)


def _probe(switch_uid: bool) -> None:
    """Exit 0 only if a job process can take every limit `_limits` sets (see `usable`)."""
    pid = os.fork()
    if pid == 0:
        try:
            _limits(64, 1, PROGRAM_UID if switch_uid else None)
        except BaseException:  # noqa: BLE001 - any failure means: not usable
            os._exit(1)
        os._exit(0)
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))


if __name__ == "__main__":  # the worker, started by _WorkerProcess inside the sandbox
    import ctypes, resource, traceback  # noqa: E401,F401,I001 - imported once here, not in every job process

    _args = sys.argv[1:]
    _not_dumpable()  # the worker holds each job's test: nothing may read its memory or its pipes
    if "--new-root" in _args:
        _build_root(_args[_args.index("--new-root") + 1], json.loads(_args[_args.index("--layout") + 1]))
    if "--probe" in _args:
        _probe("--switch-uid" in _args)
    _Worker(tmp=_args[_args.index("--tmp") + 1], switch_uid="--switch-uid" in _args).serve()
