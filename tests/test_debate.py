"""Debate over two wing designs: the figures are quoted, disagreement is said, the drawing is written."""

import json

import pytest
from test_judge import tiny_model_dir

from touchstone import cli
from touchstone.debate import argue, debate
from touchstone.errors import UserError

A = {
    "span": 10.0,
    "root_chord": 1.2,
    "taper": 0.5,
    "sweep": 5,
    "twist": -2.0,
    "airfoil": "naca2412",
    "speed": 50,
    "altitude": 2000,
    "weight": 4000,
    "alpha_limit": 10,
    "max_span": 14.0,
}
B = {"span": 7.0, "root_chord": 1.2, "taper": 0.5, "sweep": 5, "twist": -2.0, "airfoil": "naca0012"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("debate")
    (d / "a.json").write_text(json.dumps(A))
    (d / "b.json").write_text(json.dumps(B))  # B takes A's mission
    return d, tiny_model_dir(d)


def test_debate_quotes_the_simulators_figures_and_draws_both_wings(files):
    from touchstone.worlds.wing import analyze

    d, model = files
    text = debate(model, str(d / "a.json"), str(d / "b.json"), plot=d / "wings.png")
    fa = analyze({**A, **B})  # design B flying A's mission
    assert f"L/D {analyze(A)['L_over_D']:.1f}" in text and f"L/D {fa['L_over_D']:.1f}" in text
    for word in ("CL", "CD", "angle of attack", "wing loading", "stall margin", "confidence"):
        assert word in text
    assert (d / "wings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_choice_against_the_simulator_is_called_out():
    from touchstone.worlds.wing import compare

    b = {**A, **B}
    better = compare(A, b).evidence["better"]
    worse = "b" if better == "a" else "a"
    assert "disagrees" in argue(worse, 0.6, A, b) and "disagrees" not in argue(better, 0.6, A, b)
    assert f"strongest point for {better.upper()}" in argue(worse, 0.6, A, b)


def test_different_missions_are_a_user_error(files, tmp_path):
    d, model = files
    (tmp_path / "c.json").write_text(json.dumps({**A, "speed": 60}))
    with pytest.raises(UserError, match="speed"):
        debate(model, str(d / "a.json"), str(tmp_path / "c.json"))


def test_debate_cli_bad_file_exits_2(files, capsys):
    d, model = files
    assert cli.main(["debate", str(model), str(d / "a.json"), str(d / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
