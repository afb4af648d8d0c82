"""The two processes of a job, inside the sandbox: the *program* process runs the untrusted code and
answers calls to its function with plain values; the *test* process runs the trusted test against a
proxy of that function, and its return value is the verdict.

Runs only inside the sandbox, imported by plain name by the worker (`worker.py`).
"""

from __future__ import annotations

import builtins
import os
import sys

from wire import Unsupported, decode, encode, recv, send


def format_exc(e: BaseException) -> str:
    import traceback

    lines = traceback.format_exception(type(e), e, e.__traceback__)
    text = "".join(lines[-4:]) if len(lines) > 4 else "".join(lines)
    return text.strip()[-2000:]


def program_main(job: dict, mode: str) -> None:
    """The untrusted side: run the program; in check mode, then answer calls on fds 3 (in) and 4 (out)."""
    try:
        code = compile(job["program"], "<program>", "exec")
    except (SyntaxError, ValueError) as e:
        if mode == "check":
            send(4, {"syntax_error": f"{type(e).__name__}: {e}"})
        else:
            print(format_exc(e), file=sys.stderr)
        os._exit(1)
    # The builtins module itself, as a script's own `__builtins__` is (not the dict a module sees).
    ns = {"__name__": "__main__" if mode == "run" else "candidate", "__builtins__": builtins}
    try:
        exec(code, ns)
    except SystemExit as e:
        sys.stdout.flush()
        if mode == "run":
            os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
        os._exit(0)  # the test process sees the pipe close before its calls were answered
    except BaseException as e:  # noqa: BLE001 - any failure of untrusted code is reported, not raised
        if mode == "check":
            send(4, {"error": format_exc(e)})
        else:
            print(format_exc(e), file=sys.stderr)
        sys.stdout.flush()
        os._exit(1)
    if mode == "run":
        sys.stdout.flush()
        os._exit(0)
    send(4, {"ready": True})
    while (request := recv(3)) is not None:
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
            reply = {"raised": type(e).__name__, "message": format_exc(e)}
        sys.stdout.flush()
        send(4, reply)
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
            send(self.wfd, {"args": encode(list(args)), "kwargs": {k: encode(v) for k, v in kwargs.items()}})
        except BrokenPipeError:
            raise CandidateError("runtime_error", "the program exited before its tests finished") from None
        reply = recv(self.rfd)
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


def test_main(job: dict) -> dict:
    """The trusted side: run the test against the proxy; the returned dict is the verdict."""
    first = recv(3)
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
        return {"status": "test_error", "message": "the test itself failed to load: " + format_exc(e)}
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
