"""The namespaces isolation's root, built by the worker itself as bubblewrap would build it.

Runs only inside the sandbox, imported by plain name by the worker (`worker.py`).
"""

from __future__ import annotations

import os

from limits import SHM_BYTES, TMPFS_BYTES, check_errno, load_libc

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
DEVICES = ("null", "zero", "full", "random", "urandom")


def build_root(new_root: str, layout: list[list[str]]) -> None:
    """In the namespaces isolation, before the worker serves: as root of its fresh mount namespace,
    mount a read-only root holding only `layout`, a new /proc, five devices and two size-capped tmpfs
    (/tmp, /dev/shm), then pivot into it and detach the host's root, as bubblewrap does."""
    libc = load_libc()

    def mount(source, target, fstype, flags, data=None):
        args = [None if x is None else x.encode() for x in (source, target, fstype)]
        check_errno(libc.mount(*args, flags, None if data is None else data.encode()), f"mount {target}")

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
    check_errno(libc.pivot_root(b".", b"."), "pivot_root")  # the host's root now lies over ours ...
    check_errno(libc.umount2(b".", MNT_DETACH), "umount the host's root")  # ... and is gone
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
