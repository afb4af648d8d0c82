"""The shared foundations: atomic files, record ids and schemas, typed config, the CLI's error contract."""

import argparse
import dataclasses
import gzip
import subprocess
import sys

import pytest

from touchstone import cli
from touchstone.config import Config, add_arguments, cli_fields, field, flag, from_dict, overrides_from_args
from touchstone.errors import UserError
from touchstone.files import atomic_dir, atomic_file, check_manifest, read_jsonl, write_jsonl_atomic, write_manifest
from touchstone.records import claim_record, pair_record, read_claims, schema_errors


def test_atomic_file_leaves_old_content_when_writer_fails(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no staging file left behind


def test_atomic_dir_appears_only_complete(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as staging:
        (staging / "weights").write_text("x")
        raise RuntimeError("crash")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as staging:
        (staging / "weights").write_text("x")
        write_manifest(staging, {"kind": "test"})
    assert check_manifest(out)["kind"] == "test"


def test_check_manifest_detects_modified_file(tmp_path):
    with atomic_dir(tmp_path / "d") as staging:
        (staging / "a.txt").write_text("a")
        write_manifest(staging)
    (tmp_path / "d" / "a.txt").write_text("b")
    with pytest.raises(UserError, match="sha256 differs"):
        check_manifest(tmp_path / "d")


def test_read_jsonl_names_file_and_line_of_bad_json(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(UserError, match=r"x\.jsonl:2: malformed JSON"):
        list(read_jsonl(p))


def test_read_jsonl_names_line_of_invalid_utf8(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(UserError, match=r"x\.jsonl:2: invalid UTF-8"):
        list(read_jsonl(p))


def test_jsonl_gz_round_trip(tmp_path):
    p = tmp_path / "r.jsonl.gz"
    write_jsonl_atomic(p, [{"i": i} for i in range(3)])
    with gzip.open(p, "rt") as f:
        assert f.read().count("\n") == 3
    assert [o["i"] for _, o in read_jsonl(p)] == [0, 1, 2]


def test_record_id_depends_on_content_not_provenance():
    r1 = pair_record("", "good", "bad", "a", world="language", kind="grammatical", source="x", generation=1)
    r2 = pair_record("", "good", "bad", "a", world="language", kind="grammatical", source="y", generation=7)
    r3 = pair_record("", "good", "bad", "b", world="language", kind="grammatical")
    assert r1["id"] == r2["id"] != r3["id"]
    assert schema_errors(r1) == []


def test_schema_errors_name_the_key():
    rec = claim_record("Paris is in France.", True, world="facts", kind="fact")
    rec["label"] = "yes"
    assert any("'label'" in e for e in schema_errors(rec))
    rec = claim_record("Paris is in France.", True, world="facts", kind="fact")
    rec["statement"] = "Paris is in Spain."
    assert any("'id'" in e for e in schema_errors(rec))


def test_read_claims_accepts_csv_with_numeric_labels(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("statement,label\nTwo is even.,1\nThree is even.,0\n")
    assert [c["label"] for c in read_claims(p)] == [True, False]
    p.write_text("statement,label\nTwo is even.,maybe\n")
    with pytest.raises(UserError, match=r"c\.csv:2: key 'label'"):
        list(read_claims(p))


@dataclasses.dataclass
class _Cfg(Config):
    lr: float = field(1e-3, help="learning rate")
    steps: int = field(10, help="steps")
    name: str | None = field(None, help="name")


def test_config_rejects_unknown_key_by_name(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.1\nstepz: 3\n")
    with pytest.raises(UserError, match="unknown key 'stepz'"):
        _Cfg.load(p)


def test_config_overrides_and_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.1\nsteps: 3\n")
    cfg = _Cfg.load(p, {"steps": 5})
    assert (cfg.lr, cfg.steps) == (0.1, 5)
    with pytest.raises(UserError, match="key 'steps'"):
        from_dict(_Cfg, {"steps": "many"})


@dataclasses.dataclass
class _Flags(Config):
    batch_size: int = field(16, help="records per step", min=1)
    ratio: float = field(0.5, help="a share of 100%", min=0, max=1)
    fast: bool = field(False, help="go fast")
    mode: str = field("a", help="how", choices=("a", "b"))
    tags: list = field([], help="a list: YAML only")


def test_flags_are_the_config_fields_with_their_help_and_ranges(capsys):
    parser = cli.Parser(prog="t")
    add_arguments(parser, _Flags)
    assert overrides_from_args(parser.parse_args([]), _Flags) == {}  # defaults stay the dataclass's
    args = parser.parse_args(["--batch-size", "4", "--fast", "--mode", "b"])
    assert overrides_from_args(args, _Flags) == {"batch_size": 4, "fast": True, "mode": "b"}
    assert _Flags.load(None, overrides_from_args(args, _Flags)) == _Flags(batch_size=4, fast=True, mode="b")
    help_text = " ".join(parser.format_help().split())
    assert "records per step (default: 16)" in help_text and "a share of 100% (default: 0.5)" in help_text
    assert "--no-fast" in help_text and "--tags" not in help_text
    for argv, culprit in (
        (["--batch-size", "0"], "--batch-size: must be at least 1, got '0'"),
        (["--ratio", "2"], "--ratio: must be at most 1, got '2'"),
        (["--ratio", "nan"], "--ratio: must be at least 0, got 'nan'"),
        (["--batch-size", "x"], "--batch-size: expected an integer, got 'x'"),
        (["--mode", "c"], "--mode: invalid choice: 'c'"),
    ):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        assert e.value.code == 2 and culprit in capsys.readouterr().err
    # The same bound, from a YAML file or code, says the same.
    with pytest.raises(UserError, match="--batch-size: must be at least 1, got 0"):
        _Flags.load(None, {"batch_size": 0})


def _subcommand(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


@pytest.mark.parametrize(
    "command,cls",
    [
        (("data", "prepare"), "PrepareConfig"),
        (("pretrain",), "PretrainConfig"),
        (("finetune",), "FinetuneConfig"),
        (("study",), "FinetuneConfig"),
        (("run",), "LoopConfig"),
        (("serve",), "ServeConfig"),
    ],
)
def test_every_setting_of_a_stage_is_a_flag_with_its_fields_help(command, cls):
    cls = getattr(cli, cls)
    parser = _subcommand(cli.build_parser(), *command)
    actions = {opt: a for a in parser._actions for opt in a.option_strings}
    for f in cli_fields(cls):
        action = actions[flag(f.name)]
        assert action.dest == f.name and action.default is None
        assert action.help.startswith(f.metadata["help"].replace("%", "%%")), f.name
        assert f.metadata["help"], f"{cls.__name__}.{f.name} has no help text"


def test_cli_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    code = cli.main(["verify", "numbers", str(tmp_path / "missing.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "missing.jsonl" in err and "Traceback" not in err


def test_help_is_instant_and_imports_no_torch():
    code = (
        "import sys, time; t=time.time(); from touchstone.cli import build_parser; build_parser().format_help(); "
        "print('torch' in sys.modules, round(time.time()-t, 3))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"
    assert float(out[1]) < 1.0
