"""Run untrusted Python, and decide from the outside whether it passed its tests.

    from touchstone.sandbox import Sandbox, run_python
    run_python("print(6 * 7)").stdout                      # '42\\n'
    with Sandbox(workers=2) as box:                         # long-lived workers for throughput
        box.check(program, test, entry_point).status       # pass | syntax_error | runtime_error | ...

How it works. A *worker* is this very file run as a script by a bare interpreter (`python -I -S`, no
site-packages, scrubbed environment) inside bubblewrap. For every job the worker forks fresh processes
from itself (fast: no interpreter start-up) and, after the job, kills every other process in its PID
namespace and deletes the job's files, so no state survives from one job to the next:

- the *program* process runs the untrusted code and then answers calls to its function over a pipe;
  every return value is encoded by exact type (None, bool, int, float, str, bytes, list, tuple, set,
  frozenset, dict); anything else (an object whose `__eq__` always says yes) cannot cross the pipe;
- the *test* process runs the trusted test (`check(candidate)`, HumanEval's shape) with `candidate` a
  proxy that sends the arguments to the program process and decodes the answer into plain values.
  So the expected values and the assertions live only in a process the program cannot reach (another
  uid when the worker can change uid, never dumpable, so no ptrace and no /proc/PID/mem), and the
  verdict is the test process's report relayed by the worker. `sys.exit(0)` before the tests, a
  forged "passed" on stdout, patching the harness or walking frames with `sys._getframe`/`gc` all
  happen inside the program process, whose only channel back is plain values; they end as a failure.

Guaranteed with bubblewrap (`Sandbox.guarantees` and every result say which hold):
  no network (new network namespace), read-only filesystem: only /usr and the interpreter are bound,
  read-only; a private size-capped tmpfs at /tmp that is wiped after each job; new PID, IPC and UTS
  namespaces; a new session; the worker dies with its parent; rlimits on CPU time, address space,
  processes, file size and open files; a wall-clock timeout after which every process of the job is
  killed; stdout/stderr truncated to `max_output` bytes; an empty environment; when the parent runs as
  root the untrusted code runs as uid 65534 (nobody) and the test as uid 65533, with no capabilities.
Fallback without a usable bubblewrap: a separate process group and session, the same rlimits and
  timeout, a scrubbed environment, `python -I -S`, a private temporary working directory and the uid
  drop when root, if other uids can read the interpreter's standard library (not so for an
  interpreter under /root; then the jobs keep the parent's uid and `guarantees` leaves out
  "unprivileged_uid"). NOT guaranteed there: no network, a read-only filesystem, or that a process which
  escaped its process group (`setsid` in a grandchild) is killed.
Never guaranteed: that the program cannot read bytes the worker freed during earlier jobs (it is forked
  from the worker; the current job's test is read only after the program process exists); resistance
  to kernel exploits; CPU fairness between concurrent jobs.
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
TMPFS_BYTES = 64 << 20
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
        data = data[os.write(fd, data):]


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
        (tag, body), = obj.items()
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

    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another uid: every capability is dropped too
    _not_dumpable()
    cpu = int(cpu_s) + 1
    for res, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory_mb << 20),
                       (resource.RLIMIT_NPROC, NPROC), (resource.RLIMIT_FSIZE, FSIZE),
                       (resource.RLIMIT_NOFILE, NOFILE), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def _not_dumpable() -> None:
    """No ptrace and no /proc/PID/mem or /proc/PID/fd for other processes of the same uid."""
    import ctypes

    PR_SET_DUMPABLE = 4
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


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
        return {"status": "wrong_answer", "message": f"{_test_line(e, job['test'])} {what}; "
                                                     f"the last call returned {candidate.last}"[:2000]}
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

    def __init__(self, tmp: str, pid_namespace: bool):
        self.tmp = tmp
        self.pid_namespace = pid_namespace
        # Jobs run as other uids only when those can still import the standard library.
        self.root = os.getuid() == 0 and _others_can_import_stdlib()
        self.count = 0
        self.statuses: dict[int, int] = {}  # exit statuses of reaped job processes

    def serve(self) -> None:
        while (job := _recv(0, limit=1 << 30)) is not None:
            _send(1, self.run(job))

    def run(self, job: dict) -> dict:
        self.count += 1
        workdir = os.path.join(self.tmp, f"job{self.count}")
        os.mkdir(workdir, 0o700)
        if self.root:
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
                self._enter_job(workdir, in_path, out_path, err_path, {3: to_prog_r, 4: from_prog_w},
                                memory_mb, timeout, PROGRAM_UID)
                _program_main(job, mode)
            pids.append(program)
            if mode == "check":
                test_job = _recv(0, limit=1 << 30)  # read only now: the program process never holds it
                result_r, result_w = os.pipe()
                tester = os.fork()
                if tester == 0:
                    self._enter_job(workdir, "/dev/null", "/dev/null", "/dev/null",
                                    {3: from_prog_r, 4: to_prog_w, 5: result_w}, max(memory_mb, 256), timeout,
                                    TEST_UID)
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
                result.update(report or {"status": "timeout" if not finished else "test_error",
                                         "message": f"no result within the time limit of {timeout:g} s"
                                         if not finished else "the test process died"})
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
            shutil.rmtree(workdir, ignore_errors=True)

    def _enter_job(self, workdir, stdin_path, out_path, err_path, keep, memory_mb, timeout, uid) -> None:
        os.setsid()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fds = [os.open(stdin_path, os.O_RDONLY), os.open(out_path, flags, 0o600), os.open(err_path, flags, 0o600)]
        if self.root and out_path != "/dev/null":
            for fd in fds[1:]:
                os.fchown(fd, uid, uid)
        _redirect(keep, *fds)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"})
        _limits(memory_mb, timeout, uid if self.root else None)

    @staticmethod
    def _wait(pid: int, deadline: float) -> bool:
        """Wait until the process exits (True) or the deadline passes (False); it is not reaped here."""
        fd = os.pidfd_open(pid)
        try:
            return bool(select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0])
        finally:
            os.close(fd)

    def _kill_all(self, pids: list[int]) -> dict[int, int]:
        """Kill every process of the job (in a PID namespace: every process but the worker and init)
        and reap the worker's children; returns their exit statuses (negative: signal)."""
        me = os.getpid()
        for _ in range(100):
            if self.pid_namespace:
                victims = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
            else:
                victims = pids
            victims = [p for p in victims if _alive(p)]
            if not victims:
                break
            for pid in victims:
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            for pid in pids:  # our own children: wait for them to die, no polling
                if pid not in self.statuses and pid in victims:
                    try:
                        self.statuses[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    except ChildProcessError:
                        pass
            if any(p not in pids for p in victims):
                time.sleep(0.001)  # strays (reparented to init) take a moment to go
        return self._reap(pids)

    def _reap(self, pids: list[int]) -> dict[int, int]:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.statuses[pid] = os.waitstatus_to_exitcode(status)
        return {p: self.statuses.pop(p) for p in pids if p in self.statuses}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------------------- the parent side
def _interpreter() -> str:
    """The base interpreter of this environment (the sandbox needs no site-packages)."""
    candidate = os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    return candidate if os.path.exists(candidate) else os.path.realpath(sys.executable)


def _bwrap_argv(python: str) -> list[str]:
    root = os.getuid() == 0
    argv = ["bwrap", "--die-with-parent", "--new-session", "--clearenv", "--setenv", "LANG", "C.UTF-8",
            "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if root:
        # Privileged mode: no user namespace, so the job processes can become a real unprivileged uid
        # (rlimits such as RLIMIT_NPROC do not bind root). The worker keeps only what it needs.
        argv += ["--cap-drop", "ALL"]
        for cap in ("SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER"):
            argv += ["--cap-add", f"CAP_{cap}"]
    else:
        argv += ["--unshare-user"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if not prefix.startswith("/usr/"):
        parts = prefix.strip("/").split("/")
        for i in range(1, len(parts)):  # world-traversable parents, so the unprivileged uid reaches it
            argv += ["--perms", "0755", "--dir", "/" + "/".join(parts[:i])]
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
             "--ro-bind", os.path.abspath(__file__), f"{SANDBOX_DIR}/worker.py", "--chdir", "/tmp",
             python, "-I", "-S", f"{SANDBOX_DIR}/worker.py", "--tmp", "/tmp", "--pid-namespace"]
    return argv


_bwrap_ok: bool | None = None


def bwrap_usable() -> bool:
    """Can bubblewrap start the worker here? Checked once per process."""
    global _bwrap_ok
    if _bwrap_ok is None:
        _bwrap_ok = False
        if shutil.which("bwrap"):
            argv = _bwrap_argv(_interpreter())
            argv = argv[:argv.index("-I")] + ["-I", "-S", "-c", "pass"]
            try:
                _bwrap_ok = subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.SubprocessError):
                _bwrap_ok = False
    return _bwrap_ok


class _WorkerProcess:
    """The parent's handle on one worker: start on demand, talk, kill and restart on trouble."""

    def __init__(self, use_bwrap: bool):
        self.use_bwrap = use_bwrap
        self.proc: subprocess.Popen | None = None
        self.tmp: str | None = None

    def _start(self) -> None:
        python = _interpreter()
        env = {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
        if self.use_bwrap:
            argv, cwd = _bwrap_argv(python), "/"
        else:
            self.tmp = tempfile.mkdtemp(prefix="touchstone-sandbox-")
            os.chmod(self.tmp, 0o755)
            argv, cwd = [python, "-I", "-S", os.path.abspath(__file__), "--tmp", self.tmp], self.tmp
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=cwd, env=env, start_new_session=True, bufsize=0)

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
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


@dataclass
class Sandbox:
    """A pool of sandbox workers. Jobs are independent: each gets fresh processes and a wiped /tmp."""

    workers: int = 1
    use_bwrap: bool | None = None  # None: bubblewrap when usable
    _pool: list = field(default_factory=list, repr=False)
    _idle: object = field(default=None, repr=False)

    def __post_init__(self):
        import queue

        if self.use_bwrap is None:
            self.use_bwrap = bwrap_usable()
        self._idle = queue.Queue()
        for _ in range(max(1, self.workers)):
            w = _WorkerProcess(self.use_bwrap)
            self._pool.append(w)
            self._idle.put(w)

    @property
    def guarantees(self) -> tuple[str, ...]:
        g = ["separate_process", "new_session", "rlimits", "wall_timeout", "output_cap", "scrubbed_env",
             "kill_process_group"]
        if os.getuid() == 0 and (self.use_bwrap or _others_can_import_stdlib()):
            g.append("unprivileged_uid")
        if self.use_bwrap:
            g += ["no_network", "read_only_fs", "private_tmp", "pid_namespace", "kill_all_job_processes"]
        return tuple(g)

    def _job(self, messages: list[dict], timeout: float) -> SandboxResult:
        worker = self._idle.get()
        try:
            r = worker.request(messages, timeout)
            if r is None:  # the worker itself died or hung (infrastructure, not the job): once more
                r = worker.request(messages, timeout) or {
                    "status": "error", "message": "the sandbox worker died or hung twice on this job"}
        finally:
            self._idle.put(worker)
        value = None
        if r.get("value") is not None:
            try:
                value = decode(r["value"])
            except (ValueError, TypeError):
                value = None
        return SandboxResult(status=r.get("status", "error"), message=r.get("message", ""),
                             stdout=r.get("stdout", ""), stderr=r.get("stderr", ""),
                             returncode=r.get("returncode"), duration=r.get("duration", 0.0),
                             truncated=r.get("truncated", False), value=value, guarantees=self.guarantees)

    def run(self, code: str, *, inputs: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            memory_mb: int = DEFAULT_MEMORY_MB, max_output: int = DEFAULT_MAX_OUTPUT) -> SandboxResult:
        """Run `code` as a script with `inputs` on stdin; status ok | error | timeout."""
        return self._job([{"mode": "run", "program": code, "stdin": inputs, "timeout": timeout,
                           "memory_mb": memory_mb, "max_output": max_output}], timeout)

    def check(self, program: str, test: str, entry_point: str, *, prompt: str = "",
              timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
              max_output: int = DEFAULT_MAX_OUTPUT) -> SandboxResult:
        """Run `program`, then the trusted `test` (which defines `check(candidate)`) against its function
        `entry_point`. `prompt` is trusted code the test may use (HumanEval's helper functions)."""
        return self._job([{"mode": "check", "program": program, "entry_point": entry_point, "timeout": timeout,
                           "memory_mb": memory_mb, "max_output": max_output},
                          {"test": test, "prompt": prompt, "entry_point": entry_point}], timeout)

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


def run_python(code: str, *, inputs: str | None = None, timeout: float = DEFAULT_TIMEOUT,
               memory_mb: int = DEFAULT_MEMORY_MB, max_output: int = DEFAULT_MAX_OUTPUT) -> SandboxResult:
    """Run `code` once in a fresh sandbox; see `Sandbox.run`."""
    with Sandbox(workers=1) as box:
        return box.run(code, inputs=inputs, timeout=timeout, memory_mb=memory_mb, max_output=max_output)


if __name__ == "__main__":  # the worker, started by _WorkerProcess inside the sandbox
    import ctypes, resource, traceback  # noqa: E401,F401 - imported once here, not in every job process
    _args = sys.argv[1:]
    _Worker(tmp=_args[_args.index("--tmp") + 1], pid_namespace="--pid-namespace" in _args).serve()
