"""Which isolation the sandbox uses here, and the command line that starts a worker in it: bubblewrap
(`bwrap`) when it works, else namespaces made by util-linux `unshare` with the root built by the
worker itself (`root.py`). Never a weaker fallback.

The parent's side: imports Touchstone freely; nothing of it runs inside the sandbox.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile

from touchstone.errors import UserError
from touchstone.sandbox.limits import SHM_BYTES, TMPFS_BYTES

ISOLATIONS = ("bubblewrap", "namespaces")  # in order of preference
SETTING = "TOUCHSTONE_SANDBOX"  # auto (the default) | bubblewrap | namespaces
SANDBOX_DIR = "/sandbox"  # where the worker's files are bound inside bubblewrap
HERE = os.path.dirname(os.path.abspath(__file__))
# The worker script and every sibling it imports by plain name: all the sandbox ever runs of ours.
WORKER_FILES = ("worker.py", "jobs.py", "limits.py", "root.py", "wire.py")


def interpreter() -> str:
    """The base interpreter of this environment (the sandbox needs no site-packages)."""
    candidate = os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    return candidate if os.path.exists(candidate) else os.path.realpath(sys.executable)


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
    ]
    for name in WORKER_FILES:
        argv += ["--ro-bind", os.path.join(HERE, name), f"{SANDBOX_DIR}/{name}"]
    argv += [
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
    worker then builds its root from `_layout` itself (`root.build_root`), as bubblewrap would."""
    argv = [unshare, "--fork", "--kill-child", "--pid", "--mount", "--net", "--ipc", "--uts"]
    if os.getuid() != 0:
        argv += ["--user", "--map-root-user"]
    return argv + [
        python,
        "-I",
        "-S",
        os.path.join(HERE, "worker.py"),
        "--new-root",
        new_root,
        "--layout",
        json.dumps(_layout(python)),
    ]


def worker_argv(isolation: str, python: str, new_root: str | None) -> list[str]:
    tool = shutil.which("bwrap" if isolation == "bubblewrap" else "unshare")
    if tool is None:
        raise FileNotFoundError(isolation)
    # An absolute path: the worker starts with PATH=/usr/bin:/bin, where a bwrap found elsewhere is not.
    argv = _bwrap_argv(tool, python) if isolation == "bubblewrap" else _namespaces_argv(tool, python, new_root)
    return argv + ["--tmp", "/tmp"] + (["--switch-uid"] if os.getuid() == 0 else [])


@functools.cache
def usable(isolation: str) -> bool:
    """Can this isolation start a worker here, with every limit it promises? Asked once per process:
    a worker builds its root, forks one job process through `limits.set_limits`, and exits."""
    new_root = tempfile.mkdtemp(prefix="touchstone-sandbox-")
    try:
        argv = worker_argv(isolation, interpreter(), new_root) + ["--probe"]
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
