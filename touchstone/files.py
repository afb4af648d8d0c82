"""Reading and writing files safely.

Guarantees:
- every reader accepts `.gz` transparently and reports malformed input as a `UserError` naming the
  file and line;
- every writer is atomic: it writes to a staging path on the same filesystem, fsyncs, then renames,
  so a crash at any instant leaves either the old file (or nothing) or the complete new one.
  Directories are staged the same way; their MANIFEST.json is written last, so a directory without a
  manifest is by definition incomplete.

Not guaranteed: durability of the parent directory entry on filesystems that ignore directory fsync.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from touchstone.errors import UserError

MANIFEST = "MANIFEST.json"


def shared_data() -> Path:
    """The shared data folder (BLiMP, WikiText-2, HumanEval, XKCD colours...): $TOUCHSTONE_SHARED_DATA, else
    `shared/data` beside the repository checkout. It may not exist; callers use what they find there."""
    if os.environ.get("TOUCHSTONE_SHARED_DATA"):
        return Path(os.environ["TOUCHSTONE_SHARED_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def open_text(path: str | os.PathLike, mode: str = "rt"):
    """Open a text file for reading, decompressing `.gz`; strict UTF-8 so bad bytes are caught."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file")
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8", errors="strict")
    return open(path, mode, encoding="utf-8", errors="strict")


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; a bad line is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    lineno = 0
    try:
        # Bytes, decoded line by line, so that invalid UTF-8 is reported on the line where it is.
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(obj, dict):
                    raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
    except (OSError, EOFError) as e:  # truncated .gz, unreadable file
        raise UserError(f"{path}:{lineno + 1}: cannot read ({e})") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a staging file or directory the mode a plain `open`/`mkdir` would have (mkstemp and mkdtemp
    make them private, which would leave every output readable by its owner only)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
    """Open a staging file beside `path`; on clean exit fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _plain_mode(tmp)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode if binary else mode, **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records as JSONL (gzip if the name ends in .gz); returns the count."""
    n = 0
    path = Path(path)
    with atomic_file(path, "wb") as raw:
        sink = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == ".gz" else raw
        for rec in records:
            sink.write((json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
            n += 1
        if sink is not raw:
            sink.close()
    return n


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False):
    """Build a directory in a staging sibling and rename it into place on clean exit.

    The caller writes everything into the yielded staging path, MANIFEST.json last (see
    `write_manifest`). If `path` exists and `overwrite` is set, the old directory is moved aside and
    removed only after the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging", dir=path.parent))
    _plain_mode(staging, directory=True)
    try:
        yield staging
        for root, _, names in os.walk(staging):
            for name in names:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
            fsync_dir(root)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(staging, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(directory: str | os.PathLike, extra: dict | None = None) -> dict:
    """Write MANIFEST.json listing the sha256 and size of every file in `directory` (written last)."""
    directory = Path(directory)
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p != directory / MANIFEST:
            files[str(p.relative_to(directory))] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {"files": files, **(extra or {})}
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest


def check_manifest(directory: str | os.PathLike, verify_hashes: bool = True) -> dict:
    """Return the manifest of a complete directory, or raise UserError saying what is wrong."""
    directory = Path(directory)
    mpath = directory / MANIFEST
    if not mpath.exists():
        raise UserError(f"{directory}: incomplete (no {MANIFEST}); it was interrupted or is not ours")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{mpath}: corrupt manifest ({e})") from None
    for name, meta in manifest.get("files", {}).items():
        p = directory / name
        if not p.exists():
            raise UserError(f"{p}: listed in {MANIFEST} but missing")
        if verify_hashes and sha256_file(p) != meta["sha256"]:
            raise UserError(f"{p}: sha256 differs from {MANIFEST} (corrupt or modified)")
    return manifest
