"""A pretraining run's state while it trains: `.OUT.run/checkpoint/` beside the model directory OUT.

Guaranteed: a checkpoint is written atomically (the previous one stays valid until the rename) with a
MANIFEST.json, so a half-written or altered one is a one-line error, never a crash mid-training.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import MANIFEST, atomic_dir, check_manifest, write_manifest


def run_dir_of(out: str | Path) -> Path:
    """Where the run that makes the model directory `out` keeps its state: `.OUT.run` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.run"


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write the whole training state atomically; the previous checkpoint stays valid until the rename."""
    import torch

    with atomic_dir(run_dir / "checkpoint", overwrite=True) as stage:
        torch.save(state, stage / "state.pt")
        write_manifest(
            stage,
            {"kind": "pretrain-checkpoint", "step": state["step"], "device": state["config"].get("device") or "cpu"},
        )


def load_checkpoint(run_dir: Path) -> dict:
    import torch

    path = run_dir / "checkpoint"
    if not path.is_dir():
        raise UserError(f"{path}: nothing to resume (no checkpoint); run without --resume")
    check_manifest(path)  # a half-written or altered checkpoint fails here, naming the file
    try:
        return torch.load(path / "state.pt", weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise UserError(f"{path / 'state.pt'}: unreadable checkpoint ({str(e).splitlines()[0][:200]})") from None


def checkpoint_device(run_dir: Path) -> str | None:
    """The device a checkpoint's run trained on, from its manifest alone (no torch needed); None when there
    is no readable one (loading it then reports what is wrong)."""
    manifest = run_dir / "checkpoint" / MANIFEST
    if not manifest.is_file():
        return None
    try:
        return json.loads(manifest.read_text()).get("device") or "cpu"  # older checkpoints: CPU runs
    except (OSError, ValueError):
        return None
