"""Atomic outputs never lose what was there: an existing directory is replaced only with overwrite and
only when Touchstone wrote it, an interrupted write's leftovers are cleaned by the next write, and a
version moved aside just before a crash is put back."""

import json
import os

import pytest

from touchstone.errors import UserError
from touchstone.files import atomic_dir, atomic_file, check_output, write_manifest
from touchstone.lint import lint_main
from touchstone.records import claim_record

DEAD = 2**22 + 12345  # above the kernel's default pid_max: no process has this pid


def made(path, content="v1"):
    with atomic_dir(path) as stage:
        (stage / "out.txt").write_text(content)
        write_manifest(stage, {"kind": "test"})
    return path


def test_an_existing_directory_is_replaced_only_with_overwrite(tmp_path):
    out = made(tmp_path / "out")
    with pytest.raises(UserError, match="--overwrite"):
        made(out, "v2")
    assert (out / "out.txt").read_text() == "v1"
    with atomic_dir(out, overwrite=True) as stage:
        (stage / "out.txt").write_text("v2")
        write_manifest(stage)
    assert (out / "out.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


def test_overwrite_never_replaces_a_directory_touchstone_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="no MANIFEST.json"):
        check_output(mine, overwrite=True, directory=True)
    ours = made(tmp_path / "ours")
    (ours / "added.txt").write_text("added by hand")  # ours, but someone put a file in it since
    with pytest.raises(UserError, match="added.txt"), atomic_dir(ours, overwrite=True) as stage:
        write_manifest(stage)
    assert (mine / "notes.txt").read_text() == "keep me" and (ours / "added.txt").exists()


def test_an_empty_directory_may_receive_an_output(tmp_path):
    (tmp_path / "empty").mkdir()
    made(tmp_path / "empty")
    assert (tmp_path / "empty" / "out.txt").read_text() == "v1"


def test_the_next_write_cleans_what_an_interrupted_one_left(tmp_path):
    (tmp_path / f".out.{DEAD}.abcd1234.staging").mkdir()
    (tmp_path / f".out.{DEAD}.abcd1234.staging" / "half.bin").write_bytes(b"x" * 100)
    (tmp_path / ".out.legacy12.staging").mkdir()  # written before staging names carried a pid
    (tmp_path / f".out.txt.{DEAD}.zz.tmp").write_text("half")
    live = tmp_path / f".out.{os.getppid()}.live.staging"  # a running process's: left alone
    live.mkdir()
    made(tmp_path / "out")
    with atomic_file(tmp_path / "out.txt") as f:
        f.write("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", "out.txt", live.name])


def test_a_version_moved_aside_just_before_a_crash_is_put_back(tmp_path):
    out = made(tmp_path / "out")
    os.replace(out, tmp_path / f".out.old-{DEAD}")  # the crash: old moved aside, new not yet in place
    with pytest.raises(UserError, match="already exists"):  # restored first, so still protected
        made(out, "v2")
    assert (out / "out.txt").read_text() == "v1" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_lint_fix_into_the_folder_that_holds_its_input_deletes_nothing(tmp_path, capsys):
    from touchstone import cli

    d = tmp_path / "d"
    d.mkdir()
    rec = claim_record("Rome is in Italy.", True, world="facts-test", kind="k")
    (d / "records.jsonl").write_text(json.dumps(rec) + "\n")
    for extra in ([], ["--overwrite"]):
        assert cli.main(["lint", str(d / "records.jsonl"), "--no-verify", "--fix", str(d), *extra]) == 2
        assert os.listdir(d) == ["records.jsonl"]
    (tmp_path / "f.txt").write_text("a file")
    assert cli.main(["lint", str(d / "records.jsonl"), "--no-verify", "--fix", str(tmp_path / "f.txt")]) == 2
    assert (tmp_path / "f.txt").read_text() == "a file" and not list(tmp_path.glob(".f.txt*"))
    capsys.readouterr()
    # A fix directory lint wrote is replaced with --overwrite.
    fix, evals = tmp_path / "fix", tmp_path / "eval.txt"
    evals.write_text("An evaluation sentence that no record shares.\n")
    args = dict(fix=str(fix), verify=False, eval_sets=[str(evals)])
    assert lint_main([str(d / "records.jsonl")], **args) == 0
    with pytest.raises(UserError, match="--overwrite"):
        lint_main([str(d / "records.jsonl")], **args)
    assert lint_main([str(d / "records.jsonl")], overwrite=True, **args) == 0
