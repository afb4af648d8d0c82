"""Every limit of a sandbox job, and how a freshly forked job process takes them: no capabilities, not
dumpable, another uid where there is one, rlimits, its stdio redirected.

Runs inside the sandbox too (imported by plain name under a bare interpreter), so it imports only the
standard library; `resource`, `ctypes` and `fcntl` are imported where they are used (the worker
imports them once before any job, and the parent never needs them).
"""

from __future__ import annotations

import functools
import os

DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 512
DEFAULT_MAX_OUTPUT = 64 * 1024
NPROC = 32  # processes of the sandbox's uid (a fork bomb stops here)
NOFILE = 64
FSIZE = 16 << 20  # largest file the program may write (stdout included)
TMPFS_BYTES = 64 << 20  # the job's whole disk: /tmp
SHM_BYTES = 8 << 20  # and a private /dev/shm
PROGRAM_UID, TEST_UID = 65534, 65533


@functools.lru_cache(maxsize=1)
def others_can_import_stdlib() -> bool:
    """Can a uid other than ours read this interpreter's standard library? (Asked for every job's
    result, so the walk up the directories happens once per process.)"""
    return searchable_by_others(os.path.dirname(os.path.realpath(os.__file__)))


def searchable_by_others(path: str) -> bool:
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


def prepare_worker() -> None:
    """In the worker, once, before its first job: what every job process would otherwise do for itself
    and inherits instead. The bounding set is emptied (where the worker holds CAP_SETPCAP: no exec can
    ever regain a capability) and no_new_privs set (setuid files and file capabilities are ignored by
    exec); both pass to every fork and can never be undone. The worker keeps its effective
    capabilities (the bounding set limits only what an exec grants), and it never execs. libc and the
    functions the job processes call are looked up here, so a job process does not repeat it."""
    libc = load_libc()
    for cap in range(64):  # past the kernel's last capability prctl fails with EINVAL: harmless
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    check_errno(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    libc.capset  # noqa: B018 - looked up now, in the worker
    _no_capabilities()


def set_limits(memory_mb: int, cpu_s: float, uid: int | None) -> None:
    """Drop privileges, then cap resources. Runs in a freshly forked job process, after the worker's
    `prepare_worker`."""
    import resource

    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another uid: every capability is dropped too
    _drop_capabilities()  # where the uid stays (the root of a user namespace), drop them explicitly
    not_dumpable()
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


@functools.lru_cache(maxsize=1)
def load_libc():
    """libc, loaded once per process (a job process uses the worker's, inherited by fork)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def check_errno(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38


@functools.lru_cache(maxsize=1)
def _no_capabilities():
    """capset's arguments for "none at all", made once (by the worker's `prepare_worker`): a new
    ctypes array type is costly to make in every job process."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    empty = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: two 32-bit words each
    return header, empty


def _drop_capabilities() -> None:
    """No capabilities at all (no_new_privs, set by `prepare_worker`, keeps it so across exec).
    Without this, a job left as uid 0 of a user namespace would hold CAP_SYS_PTRACE over the test
    process beside it."""
    check_errno(load_libc().capset(*_no_capabilities()), "capset")


def not_dumpable() -> None:
    """No ptrace and no /proc/PID/mem or /proc/PID/fd for other processes without CAP_SYS_PTRACE,
    which no job process holds."""
    check_errno(load_libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def redirect(keep: dict[int, int], stdin: int, stdout: int, stderr: int) -> None:
    """In a job process: stdio to the given fds, `keep` moved to fixed numbers, every other fd closed.
    Each fd is first copied above every target, so no dup2 overwrites one that is still to be moved
    (the worker's fds may have any numbers)."""
    import fcntl

    above = max(keep, default=2) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, above) for fd in (stdin, stdout, stderr, *keep.values())]
    for target, fd in zip((0, 1, 2, *keep), moved):
        os.dup2(fd, target)
    os.closerange(above, 1 << 16)
