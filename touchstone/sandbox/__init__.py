"""Run untrusted Python, and decide from the outside whether it passed its tests.

    from touchstone.sandbox import Sandbox, run_python
    run_python("print(6 * 7)").stdout                      # '42\\n'
    with Sandbox(workers=2) as box:                         # long-lived workers for throughput
        box.check(program, test, entry_point).status       # pass | syntax_error | runtime_error | ...

How it works. A *worker* is `worker.py` run as a script by a bare interpreter (`python -I -S`, no
site-packages, empty environment) inside fresh namespaces. For every job the worker forks fresh
processes from itself (fast: no interpreter start-up; the worker has imported the standard modules
jobs commonly use, such as typing, math and re, and each job process gets its own copy of them) and,
after the job, kills every other process in its PID namespace and empties its scratch space, so no
state survives from one job to the next:

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
the same root itself (`root.build_root`). $TOUCHSTONE_SANDBOX=bubblewrap|namespaces picks one. Where
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
  - job processes hold no capabilities and cannot gain any (no_new_privs set by the worker before
    its first job, inherited by every fork and irreversible, so setuid programs and file
    capabilities do not elevate; the bounding set is emptied too where the worker may, which under
    bubblewrap, without CAP_SETPCAP, it may not), and are not dumpable, like the worker: no ptrace, no
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

The package. Inside the sandbox, where Touchstone is not importable, run `worker.py` and the siblings
it imports by plain name, which use only the standard library: `wire.py` (the messages and the plain
values, used by both sides), `limits.py` (every limit, and how a job process takes them), `jobs.py`
(the program and test processes) and `root.py` (the namespaces isolation's root). The parent's side is
`isolation.py` (which isolation, and the worker's command line) and `pool.py` (`Sandbox`).
"""

from touchstone.sandbox.isolation import (
    ISOLATIONS,
    SANDBOX_DIR,
    SETTING,
    WORKER_FILES,
    choose_isolation,
    interpreter,
    usable,
    worker_argv,
)
from touchstone.sandbox.limits import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT,
    FSIZE,
    NOFILE,
    NPROC,
    PROGRAM_UID,
    SHM_BYTES,
    TEST_UID,
    TMPFS_BYTES,
    searchable_by_others,
)
from touchstone.sandbox.pool import Sandbox, SandboxResult, run_python, shared_sandbox
from touchstone.sandbox.wire import MAX_MESSAGE, Unsupported, decode, encode

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT",
    "FSIZE",
    "ISOLATIONS",
    "MAX_MESSAGE",
    "NOFILE",
    "NPROC",
    "PROGRAM_UID",
    "SANDBOX_DIR",
    "SETTING",
    "SHM_BYTES",
    "TEST_UID",
    "TMPFS_BYTES",
    "WORKER_FILES",
    "Sandbox",
    "SandboxResult",
    "Unsupported",
    "choose_isolation",
    "decode",
    "encode",
    "interpreter",
    "run_python",
    "searchable_by_others",
    "shared_sandbox",
    "usable",
    "worker_argv",
]
