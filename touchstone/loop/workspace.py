"""A workspace on disk: its layout (docs in DESIGN.md), its lock, what interrupted writes left behind,
what finished generations no longer need, and the checks of a workspace at rest."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import MANIFEST, check_manifest, read_json, read_jsonl, write_text_atomic
from touchstone.loop.ledger import Ledger, generation_stats
from touchstone.staging import LEFTOVER, clean_leftovers, fsync_dir
from touchstone.worlds import get_world

# What a rejected challenger's directory keeps once its weights go: what status, history and a person
# reading the workspace use (its held-out scores, the recipe that made it, its training report).
KEPT_OF_REJECTED = ("eval.json", "recipe.yaml", "report.md")


class Workspace:
    """The paths of one workspace and its lock."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.orig = self.root / "data" / "orig"
        self.new = self.root / "data" / "new"
        self.rework = self.root / "data" / "rework"
        self.tokenizer = self.root / "tokenizer"
        self.models = self.root / "models"
        self.recipes = self.root / "recipes"
        self.generations = self.root / "generations"
        self.reports = self.root / "reports"
        self.ledger_path = self.root / "ledger.sqlite"
        self.config_path = self.root / "config.yaml"

    def model(self, gen: int) -> Path:
        return self.models / f"gen-{gen:04d}"

    def gen_dir(self, gen: int) -> Path:
        return self.generations / f"gen-{gen:04d}"

    def new_file(self, gen: int) -> Path:
        """The records generation `gen` verified into data/new."""
        return self.new / f"gen-{gen:04d}.jsonl"

    def new_files(self) -> list[Path]:
        return sorted(self.new.glob("gen-*.jsonl"))

    def rework_dirs(self) -> list[Path]:
        return sorted(self.rework.glob("gen-*"))

    def champion(self) -> str | None:
        """The champion's name, from models/CHAMPION (None before generation 0 has one)."""
        p = self.models / "CHAMPION"
        if not p.exists():
            return None
        try:
            name = p.read_bytes().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            name = None
        if not name or not re.fullmatch(r"gen-\d{4,}", name):
            raise UserError(f"{p}: corrupt (expected the name of a model in {self.models}, like gen-0003)")
        return name

    def set_champion(self, name: str) -> None:
        check_manifest(self.models / name, verify_hashes=False)  # only a complete model may be named
        write_text_atomic(self.models / "CHAMPION", name + "\n")

    def worlds(self, names: list[str]) -> dict:
        """The loop's worlds; those that read a corpus (`World.reads_corpus`) read data/orig, the workspace's."""
        return {n: get_world(n, corpus=str(self.orig)) for n in names}

    def check_root(self, for_run: bool = False) -> None:
        """The root is a directory (or absent); `for_run`: and holds nothing but a workspace's own entries,
        so that a loop never fills (or cleans) a folder that is not a workspace."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: a file, not a workspace directory; choose another --workspace")
        if for_run and self.root.is_dir() and not self.ledger_path.exists():
            own = {
                "LOCK",
                self.config_path.name,
                self.ledger_path.name,
                "data",
                "models",
                "tokenizer",
                "recipes",
                "generations",
                "reports",
            }
            for entry in sorted(self.root.iterdir()):
                m = LEFTOVER.fullmatch(entry.name)
                if (
                    entry.name not in own
                    and not entry.name.startswith(self.ledger_path.name)
                    and not (m and m["name"] in own)
                ):
                    raise UserError(
                        f"{self.root}: not a Touchstone workspace (no ledger.sqlite) and not empty "
                        f"({entry.name}); choose a new or empty --workspace"
                    )

    def open_ledger(self) -> Ledger:
        """The ledger of an existing workspace (a UserError where there is none)."""
        self.check_root()
        if not self.ledger_path.exists():
            raise UserError(
                f"{self.root}: not a Touchstone workspace (no ledger.sqlite); start one with `touchstone run`"
            )
        return Ledger(self.ledger_path)

    @contextlib.contextmanager
    def lock(self):
        """Exclusive use of the workspace; a second loop gets a UserError at once."""
        self.check_root()
        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.root / "LOCK", "a+")  # noqa: SIM115 - held for as long as the loop runs
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"{self.root}: in use by another loop ({holder}); one loop per workspace") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.close()

    def clean_staging(self) -> None:
        """Remove what interrupted atomic writes left behind (hidden staging files and directories of
        dead processes; a version moved aside mid-swap is put back, see `files.clean_leftovers`), and
        rejected challengers `drop_rejected` had hidden but not yet deleted."""
        for parent in (
            self.root,
            self.orig.parent,
            self.new,
            self.rework,
            self.models,
            self.recipes,
            self.generations,
            self.reports,
            self.tokenizer.parent,
        ):
            if not parent.is_dir():
                continue
            clean_leftovers(parent)
            for p in parent.glob(".*.rejected"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            for d in parent.glob("gen-*"):
                if d.is_dir():
                    clean_leftovers(d)


def records(path: Path) -> list[dict]:
    """The records of a JSONL file the loop wrote (none if it does not exist)."""
    return [obj for _, obj in read_jsonl(path)] if path.exists() else []


def ids_in(paths) -> set[str]:
    return {r["id"] for p in paths for r in records(p)}


def data_counts(ws: Workspace) -> dict[str, int]:
    def count(paths):
        return sum(sum(1 for _ in read_jsonl(p)) for p in paths if p.exists())

    manifest = read_json(ws.orig / MANIFEST) if (ws.orig / MANIFEST).exists() else {}
    counts = manifest.get("counts", {})
    return {
        "data/orig": int(counts.get("chunks_kept", 0)),
        "data/new": count(ws.new_files()),
        "data/rework/quarantine": count(ws.rework.glob("gen-*/quarantine.jsonl")),
        "data/rework/fixed": count(ws.rework.glob("gen-*/fixed.jsonl")),
        "data/rework/hard": count(ws.rework.glob("gen-*/hard.jsonl")),
    }


def training_base(ws: Workspace, ledger: Ledger, gen: int) -> str | None:
    """The model generation `gen`'s challenger continues from when it is not the champion: the previous
    generation's rejected challenger, if the gate found it no worse than the champion ("continue").

    Why: one generation's fine-tuning (a few hundred steps here) is rarely enough for a significant win,
    and a rejected challenger's training would otherwise be thrown away. Continuing it lets training
    accumulate across generations while the champion moves only when the gate says so."""
    prev = ledger.generation(gen - 1) if gen > 1 else None
    if not prev or prev["decision"] != "rejected" or not generation_stats(prev).get("continue"):
        return None
    name = f"gen-{gen - 1:04d}"
    return name if (ws.models / name / MANIFEST).exists() else None


def drop_rejected(ws: Workspace, ledger: Ledger, keep: str | None) -> None:
    """Delete what finished generations no longer need (idempotent, so a crash is harmless): the weights,
    tokenizer and manifest of every rejected challenger except `keep`, and its training draw; and every
    finished generation's candidates.jsonl, which only its verify step reads (the ledger keeps the counts).

    Without this a long run grows by a model per generation (55 MB for micro)."""
    for g in ledger.generations():
        if g["gen"] == 0 or not g["decision"]:
            continue
        (ws.gen_dir(g["gen"]) / "candidates.jsonl").unlink(missing_ok=True)
        doomed = ws.model(g["gen"])
        if g["decision"] != "rejected" or doomed.name == keep or not doomed.is_dir():
            continue
        (ws.gen_dir(g["gen"]) / "train.jsonl").unlink(missing_ok=True)
        if (doomed / MANIFEST).exists():
            (doomed / MANIFEST).unlink()  # first: from here on the directory is incomplete and never loaded
            fsync_dir(doomed)
        for p in doomed.iterdir():
            if p.name not in KEPT_OF_REJECTED:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if not any(doomed.iterdir()):
            doomed.rmdir()


def check_invariants(workspace: str | Path) -> list[str]:
    """What is wrong with a workspace at rest (empty when consistent): the champion is a complete model,
    data/orig matches its manifest, data/new holds no duplicate and no unverified record, and every
    finished verify step's records are all there."""
    ws, problems = Workspace(workspace), []
    champion = ws.champion()
    if champion is not None:
        try:
            check_manifest(ws.models / champion)
        except UserError as e:
            problems.append(f"champion: {e}")
    if (ws.orig / MANIFEST).exists():
        try:
            check_manifest(ws.orig)
        except UserError as e:
            problems.append(f"data/orig: {e}")
    ids = []
    for p in ws.new_files():
        for r in records(p):
            ids.append(r["id"])
            if not (r.get("verdict") or {}).get("ok"):
                problems.append(f"{p}: record {r['id'][:12]} has no passing verdict")
    if len(ids) != len(set(ids)):
        problems.append(f"data/new: {len(ids) - len(set(ids))} duplicate record(s)")
    if ws.ledger_path.exists():
        ledger = Ledger(ws.ledger_path)
        try:
            for g in ledger.generations():
                if "verify" in ledger.done_steps(g["gen"]):
                    path = ws.new_file(g["gen"])
                    if set(ledger.record_ids(g["gen"])) != {r["id"] for r in records(path)}:
                        problems.append(f"{path}: differs from the ledger's verified records of generation {g['gen']}")
                if g["decision"] == "promoted" and g["gen"] > 0 and not (ws.model(g["gen"]) / MANIFEST).exists():
                    problems.append(f"generation {g['gen']}: promoted model is missing")
        finally:
            ledger.close()
    return problems
