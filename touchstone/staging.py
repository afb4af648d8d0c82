"""What atomic writers stage beside an output while they work, and the cleanup of what an interrupted
write left there (`touchstone.files` writes through these names).

Beside NAME a writer stages `.NAME.PID.XXXXXXXX.tmp` (a file) or `.NAME.PID.XXXXXXXX.staging` (a
directory), and moves the version it replaces aside as `.NAME.old-PID` for the moment of the swap.
`clean_leftovers` recognizes these by `LEFTOVER` and removes, or puts back, those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
from pathlib import Path

# mkstemp's random part has no dots; older versions wrote no PID.
LEFTOVER = re.compile(r"\.(?P<name>.+?)\.(?:old-(?P<old>\d+)|(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.(?:tmp|staging))")


def staging_prefix(path: Path) -> str:
    """The prefix of this process's staging entries for `path` (mkstemp and mkdtemp add the rest)."""
    return f".{path.name}.{os.getpid()}."


def moved_aside_name(path: Path) -> str:
    """The name the version of `path` being replaced has during the swap."""
    return f".{path.name}.old-{os.getpid()}"


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the entries just renamed into a directory durable (where the filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()


def _gone(pid: str | None) -> bool:
    """Whether the writer with this PID can no longer finish (None: an older writer, long gone)."""
    return pid is None or (int(pid) != os.getpid() and not _pid_alive(int(pid)))


def clean_leftovers(directory: str | os.PathLike, name: str | None = None) -> None:
    """Remove what interrupted atomic writes left in `directory` (of the entry `name` alone, if given):
    staging files and directories of processes that are gone, and a previous version moved aside just
    before a crash, which is put back if its entry is missing (the swap was cut in two) and removed
    otherwise (the swap was done). A running writer's entries are left alone."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for entry in sorted(directory.glob(glob.escape(f".{name}.") + "*" if name else ".*")):
        m = LEFTOVER.fullmatch(entry.name)
        if not m or (name is not None and m["name"] != name):
            continue
        target = directory / m["name"]
        if m["old"] is not None:
            if not _gone(m["old"]):
                continue
            if not target.exists() and not target.is_symlink():
                os.replace(entry, target)
                fsync_dir(directory)
            else:
                _remove(entry)
        elif _gone(m["pid"]):
            _remove(entry)
