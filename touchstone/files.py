"""Reading and writing files safely.

Guarantees:
- every reader accepts `.gz` transparently and reports malformed input as a `UserError` naming the
  file and line;
- every writer is atomic: it writes to a staging path on the same filesystem, fsyncs, then renames,
  so a crash at any instant leaves either the old file (or nothing) or the complete new one.
  Directories are staged the same way; their MANIFEST.json is written last, so a directory without a
  manifest is by definition incomplete;
- nothing is replaced that the writer did not make: an existing output is refused unless the caller
  asks to overwrite, and then a directory only if its manifest lists every file in it (`own_directory`);
  `check_output` says so before any work is done;
- what an interrupted write left (staging files named with the writer's pid, a version moved aside
  mid-swap) is cleaned, or put back, by the next write of the same path (`staging.clean_leftovers`).

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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from touchstone.errors import UserError
from touchstone.staging import clean_leftovers, fsync_dir, moved_aside_name, staging_prefix

MANIFEST = "MANIFEST.json"


def shared_data() -> Path:
    """The shared data folder (BLiMP, WikiText-2, HumanEval, XKCD colours...): $TOUCHSTONE_SHARED_DATA, else
    `shared/data` beside the repository checkout. It may not exist; callers use what they find there."""
    if os.environ.get("TOUCHSTONE_SHARED_DATA"):
        return Path(os.environ["TOUCHSTONE_SHARED_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def cache_dir() -> Path:
    """Where Touchstone keeps what it can rebuild (the default corpus, prepared data, held-out suites):
    $TOUCHSTONE_CACHE, else $XDG_CACHE_HOME/touchstone, else ~/.cache/touchstone."""
    if os.environ.get("TOUCHSTONE_CACHE"):
        return Path(os.environ["TOUCHSTONE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "touchstone"


def open_binary(path: str | os.PathLike):
    """Open a file for reading bytes, decompressing `.gz`."""
    return gzip.open(path, "rb") if Path(path).suffix == ".gz" else open(path, "rb")


def is_binary(path: str | os.PathLike) -> bool:
    """NUL bytes near the start (decompressed): no text or JSONL file has them (JSON escapes them as
    \\u0000). An unreadable or truncated file is a UserError naming it."""
    try:
        with open_binary(path) as f:
            return b"\0" in f.read(8192)
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """The whole of a UTF-8 text file (`.gz` decompressed); a missing, binary, undecodable or unreadable
    file is a UserError naming it (and the line of a bad byte)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file (expected a {what})")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if b"\0" in raw[:65536]:
        raise UserError(f"{path}: a binary file, not a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 ({e.reason} at byte {e.start})") from None


def json_object(text: str, where: str, line: int | None = None, what: str = "a JSON object") -> dict:
    """`text` parsed as a JSON object; malformed JSON or another value is a UserError naming `where`
    (and `line`, for one line of a JSONL file)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}:{line or e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}{'' if line is None else f':{line}'}: expected {what}, got {type(obj).__name__}")
    return obj


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from a file; anything else (missing, binary, malformed, not an object) is a
    UserError naming the file."""
    return json_object(read_text(path, "JSON file"), str(path))


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield (line_number, line) of a UTF-8 file (`.gz` decompressed), decoded line by line so that invalid
    UTF-8 is a UserError naming its line and a huge file is never held in memory; a truncated or
    unreadable file is a UserError too."""
    lineno = 0
    try:
        with open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
                yield lineno, line
    except (OSError, EOFError) as e:  # truncated .gz, unreadable file
        raise UserError(f"{path}:{lineno + 1}: cannot read ({e})") from None


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; a bad line is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    for lineno, line in read_lines(path):
        if line.strip():
            yield lineno, json_object(line, str(path), lineno)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a staging file or directory the mode a plain `open`/`mkdir` would have (mkstemp and mkdtemp
    make them private, which would leave every output readable by its owner only)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _writable(path: Path, what: str) -> None:
    """UserError unless `path`'s nearest existing ancestor is a directory we can create entries in."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{path}: cannot write the {what} there: {parent} is not a directory")
    try:  # a real probe: os.access is always true for root, even on a read-only filesystem
        fd, probe = tempfile.mkstemp(prefix=staging_prefix(path), suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{path}: cannot write the {what} there ({e.strerror or e})") from None


def check_output(
    path: str | os.PathLike, overwrite: bool = False, directory: bool = False, kind: str | None = None
) -> Path:
    """Check, before any work, that `path` can receive an output without losing anything.

    A file output may replace an existing file only with `overwrite`. A directory output may be an
    empty directory; it may replace a non-empty one only with `overwrite`, and only one Touchstone
    wrote (`own_directory`; of manifest kind `kind`, when given). The parent must be a directory (or
    creatable) that we can write in. Returns `path` as a Path."""
    path = Path(path)
    what = "output directory" if directory else "output file"
    if path.is_symlink() and not path.exists():
        raise UserError(f"{path}: is a dangling symbolic link; choose another path")
    if path.exists():
        if directory:
            if not path.is_dir():
                raise UserError(f"{path}: is a file, not a directory; choose another output directory")
            if any(path.iterdir()):
                own_directory(path, kind)
                if not overwrite:
                    raise UserError(f"{path}: already exists; choose another path or pass --overwrite to replace it")
        else:
            if path.is_dir():
                raise UserError(f"{path}: is a directory; expected the path of the {what}")
            if not path.is_file():
                raise UserError(f"{path}: is not a regular file; refusing to replace it")
            if not overwrite:
                raise UserError(f"{path}: already exists; choose another path or pass --overwrite to replace it")
    _writable(path, what)
    return path


def own_directory(path: str | os.PathLike, kind: str | None = None) -> dict:
    """The manifest of `path` if it is a directory Touchstone wrote (of manifest kind `kind`, when given)
    and nothing was added to it since: every file is MANIFEST.json, listed in it, or eval.json (which
    the loop adds to a model). Otherwise a UserError: such a directory is never replaced or deleted."""
    path = Path(path)
    what = kind.replace("-", " ") + " directory" if kind else "Touchstone output directory"
    if not (path / MANIFEST).exists():
        raise UserError(f"{path}: exists and is not a {what} (no {MANIFEST}); choose another path")
    manifest = read_manifest(path, refuse="refusing to replace it")
    if kind and manifest.get("kind", kind) != kind:
        raise UserError(f"{path}: exists and is a {manifest['kind']} directory, not a {what}; choose another path")
    listed = set(manifest["files"]) | {MANIFEST, "eval.json"}
    for p in sorted(path.rglob("*")):
        if (p.is_file() or p.is_symlink()) and str(p.relative_to(path)) not in listed:
            raise UserError(
                f"{p}: not listed in {path / MANIFEST} (added since Touchstone wrote it); refusing to replace {path}"
            )
    return manifest


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
    """Open a staging file beside `path`; on clean exit fsync it and rename it over `path`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; expected a file path")
    _mkdir(path.parent)
    clean_leftovers(path.parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=staging_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"{path}: cannot write there ({e.strerror or e})") from None
    _plain_mode(tmp)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mkdir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{directory}: cannot create this directory (a file is in the way)") from None
    except OSError as e:
        raise UserError(f"{directory}: cannot create this directory ({e.strerror or e})") from None


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def jsonl_line(rec: dict) -> bytes:
    """One record as a JSONL line: UTF-8, keys sorted, so the bytes depend only on the record."""
    return (json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records as JSONL (gzip if the name ends in .gz); returns the count."""
    n = 0
    path = Path(path)
    with atomic_file(path, "wb") as raw:
        sink = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == ".gz" else raw
        for rec in records:
            sink.write(jsonl_line(rec))
            n += 1
        if sink is not raw:
            sink.close()
    return n


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False):
    """Build a directory in a staging sibling and rename it into place on clean exit.

    The caller writes everything into the yielded staging path, MANIFEST.json last (see
    `write_manifest`). An existing `path` is a UserError unless `overwrite` is set, and even then
    unless it is a directory Touchstone wrote (`own_directory`); the old directory is moved aside and
    removed only after the new one is in place. What an interrupted earlier write of `path` left
    behind is cleaned up first (`clean_leftovers`).
    """
    path = Path(path)
    _mkdir(path.parent)
    clean_leftovers(path.parent, path.name)
    if path.exists() or path.is_symlink():
        check_output(path, overwrite=overwrite, directory=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix(path), suffix=".staging", dir=path.parent))
    except OSError as e:
        raise UserError(f"{path}: cannot write there ({e.strerror or e})") from None
    _plain_mode(staging, directory=True)
    try:
        yield staging
        for root, _, names in os.walk(staging):
            for name in names:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
            fsync_dir(root)
        old = None
        if path.exists() and any(path.iterdir()):  # an empty directory is simply renamed over
            own_directory(path)  # still ours: nothing was added while this one was being built
            old = path.with_name(moved_aside_name(path))
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


def read_manifest(directory: str | os.PathLike, refuse: str = "") -> dict:
    """The MANIFEST.json of `directory`, checked for shape: a JSON object whose "files" maps relative
    paths inside the directory to {"sha256": 64 hex digits, "bytes": int}. Anything else is a UserError
    naming the manifest (with `refuse` appended, when given)."""
    directory = Path(directory)
    mpath = directory / MANIFEST
    tail = f"; {refuse}" if refuse else ""
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory{tail}")
    if not mpath.is_file():
        raise UserError(f"{directory}: not a Touchstone output (no {MANIFEST}; interrupted or not ours){tail}")
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{mpath}: corrupt manifest ({str(e).splitlines()[0][:120]}){tail}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise UserError(f'{mpath}: corrupt manifest (expected an object with a "files" mapping){tail}')
    for name, meta in files.items():
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts:
            raise UserError(f"{mpath}: corrupt manifest (file {name!r} is outside the directory){tail}")
        sha = meta.get("sha256") if isinstance(meta, dict) else None
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise UserError(f"{mpath}: corrupt manifest (file {name!r} has no sha256){tail}")
    return manifest


def check_manifest(directory: str | os.PathLike, verify_hashes: bool = True) -> dict:
    """Return the manifest of a complete directory, or raise UserError saying what is wrong."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for name, meta in manifest["files"].items():
        p = directory / name
        if not p.is_file():
            raise UserError(f"{p}: listed in {MANIFEST} but missing")
        if verify_hashes and sha256_file(p) != meta["sha256"]:
            raise UserError(f"{p}: sha256 differs from {MANIFEST} (corrupt or modified)")
    return manifest
