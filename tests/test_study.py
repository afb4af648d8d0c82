"""Learning curves: points every N steps and after the last, per world with pairs and claims apart."""

import json

from test_judge import tiny_model_dir

from touchstone import cli
from touchstone.files import write_jsonl_atomic
from touchstone.synth import synth


def test_a_study_scores_the_suites_every_n_steps_and_after_the_last(tmp_path, capsys):
    model = tiny_model_dir(tmp_path)
    synth("numbers", 10, tmp_path / "numbers.jsonl", seed=1)
    out = tmp_path / "study"
    assert (
        cli.main(
            [
                "study",
                str(model),
                "--data",
                str(tmp_path / "numbers.jsonl"),
                "--out",
                str(out),
                "--every",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--limit",
                "6",
                "--contrast",
                "1",
            ]
        )
        == 0
    )
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [0, 2, 4, 5]  # 10 records / 2 a step: 5 steps
    first, last = curve["points"][0], curve["points"][-1]
    assert set(last["worlds"]) == {"numbers"} and last["worlds"]["numbers"]["n"] == 6
    assert {"accuracy", "pairs", "claims", "claims_contrast", "per_kind"} <= set(last["worlds"]["numbers"])
    assert first["train_seconds"] == 0 <= last["train_seconds"]
    assert (out / "curve.png").stat().st_size > 0 and (out / "model" / "MANIFEST.json").is_file()
    assert "| 5 |" in capsys.readouterr().out  # the table's last row


def test_a_study_refuses_an_unknown_world(tmp_path, capsys):
    model = tiny_model_dir(tmp_path)
    write_jsonl_atomic(tmp_path / "r.jsonl", [{"statement": "x", "label": True}])
    assert (
        cli.main(
            [
                "study",
                str(model),
                "--data",
                str(tmp_path / "r.jsonl"),
                "--out",
                str(tmp_path / "s"),
                "--worlds",
                "nowhere",
            ]
        )
        == 2
    )
    assert "unknown world 'nowhere'" in capsys.readouterr().err
