"""touchstone lint: one test per diagnostic, the exit statuses, and --fix."""

import json
import unicodedata

import pytest

from touchstone.cli import main
from touchstone.errors import UserError
from touchstone.files import check_manifest
from touchstone.lint import lint_files, lint_main
from touchstone.records import claim_record, pair_record, text_record


def claim(statement, label=True):
    return claim_record(statement, label, world="facts-test", kind="k")


def pair(a, b, label="a", prompt="Which is better?"):
    return pair_record(prompt, a, b, label, world="facts-test", kind="k")


@pytest.fixture
def eval_set(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"sentence_good": "The cats sleep on the warm mat.", "sentence_bad": "x"}) + "\n")
    return str(path)


def write(tmp_path, records, name="data.jsonl"):
    path = tmp_path / name
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
        encoding="utf-8",
    )
    return str(path)


def codes(tmp_path, records, eval_set, verify=False):
    entries, diags = lint_files([write(tmp_path, records)], [eval_set], verify=verify)
    return [d.code for e in entries for d in e.diags] + [d.code for d in diags]


def test_clean_file_exits_0(tmp_path, eval_set, capsys):
    path = write(tmp_path, [claim("Paris is in France."), pair("red", "blue")])
    assert lint_main([path], eval_sets=[eval_set], verify=False) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_invalid_utf8_is_E001(tmp_path, eval_set):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(claim("ok statement here")).encode() + b"\n" + b'{"statement": "\xff"}\n')
    _, diags = lint_files([str(path)], [eval_set], verify=False)
    assert [(d.code, d.where) for d in diags] == [("E001", f"{path}:2")]


def test_malformed_json_is_E002(tmp_path, eval_set):
    assert codes(tmp_path, ["{not json", "[1, 2]"], eval_set) == ["E002", "E002"]


def test_schema_error_is_E003(tmp_path, eval_set):
    rec = claim("Water is wet.")
    del rec["world"]
    assert codes(tmp_path, [rec], eval_set) == ["E003"]


def test_wrong_id_is_E004(tmp_path, eval_set):
    assert codes(tmp_path, [{**claim("Water is wet."), "id": "0" * 64}], eval_set) == ["E004"]


def test_empty_field_is_E005(tmp_path, eval_set):
    assert "E005" in codes(tmp_path, [claim("   ")], eval_set)


def test_broken_encoding_is_E006(tmp_path, eval_set):
    assert codes(tmp_path, [claim("Caf\ufffd is open.")], eval_set) == ["E006"]


def test_identical_versions_is_E007(tmp_path, eval_set):
    assert codes(tmp_path, [pair("same", "same")], eval_set) == ["E007"]


def test_exact_duplicate_is_E010(tmp_path, eval_set):
    rec = claim("Rome is in Italy.")
    assert codes(tmp_path, [rec, rec], eval_set) == ["E010"]


def test_conflicting_labels_is_E012(tmp_path, eval_set):
    # The same two versions, swapped, with the label pointing at the other text: a contradiction.
    found = codes(tmp_path, [pair("good one", "bad one", "a"), pair("bad one", "good one", "a")], eval_set)
    assert found.count("E012") == 2
    found = codes(tmp_path, [claim("Oslo is in Norway.", True), claim("Oslo is in Norway.", False)], eval_set)
    assert found.count("E012") == 2


def test_evaluation_overlap_is_E013(tmp_path, eval_set):
    assert codes(tmp_path, [pair("the cats sleep on the warm mat", "cats sleeps")], eval_set) == ["E013"]


def test_verifier_disagreement_is_E014(tmp_path, eval_set):
    wrong = claim_record("37 plus 45 is 83.", True, world="numbers", kind="sum")
    right = claim_record("37 plus 45 is 82.", True, world="numbers", kind="sum")
    assert codes(tmp_path, [wrong, right], eval_set, verify=True) == ["E014"]


def test_overlong_field_is_W101(tmp_path, eval_set):
    assert codes(tmp_path, [claim("word " * 5000)], eval_set) == ["W101"]


def test_not_nfc_is_W102(tmp_path, eval_set):
    decomposed = unicodedata.normalize("NFD", "Café au lait is a drink.")
    rec = claim_record(decomposed, True, world="facts-test", kind="k")
    assert codes(tmp_path, [rec], eval_set) == ["W102"]


def test_near_duplicate_is_W111(tmp_path, eval_set):
    base = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    assert codes(tmp_path, [claim(base + " seventeen."), claim(base + ", seventeen!")], eval_set) == ["W111"]


def test_unknown_world_is_W115(tmp_path, eval_set):
    assert codes(tmp_path, [claim("Anything.")], eval_set, verify=True) == ["W115"]


def test_unreadable_input_exits_2(tmp_path, capsys):
    assert main(["lint", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_diagnostic_format_and_exit_1(tmp_path, eval_set, capsys):
    path = write(tmp_path, [claim("Rome is in Italy."), claim("Rome is in Italy.")])
    assert main(["lint", path, "--eval-set", eval_set, "--no-verify"]) == 1
    out = capsys.readouterr().out
    assert f"{path}:2: error[E010]: exact duplicate of {path}:1" in out and "1 error(s)" in out


def test_fix_writes_fixed_and_quarantined_and_leaves_input(tmp_path, eval_set):
    decomposed = unicodedata.normalize("NFD", "Café au lait is a drink.")
    fixable = {**claim_record(decomposed, True, world="facts-test", kind="k"), "id": "f" * 64}
    dup = claim("Rome is in Italy.")
    path = write(
        tmp_path,
        [fixable, dup, dup, pair("the cats sleep on the warm mat", "cats sleeps"), text_record("plain text", "test")],
    )
    before = open(path, encoding="utf-8").read()
    assert lint_main([path], fix=str(tmp_path / "rework"), eval_sets=[eval_set], verify=False) == 0
    assert open(path, encoding="utf-8").read() == before
    check_manifest(tmp_path / "rework")
    fixed = [json.loads(line) for line in open(tmp_path / "rework" / "fixed.jsonl")]
    quarantined = [json.loads(line) for line in open(tmp_path / "rework" / "quarantine.jsonl")]
    assert len(fixed) == 3 and len(quarantined) == 2
    repaired = fixed[0]
    assert repaired["statement"] == unicodedata.normalize("NFC", decomposed) and repaired["parent"] == "f" * 64
    assert lint_main([str(tmp_path / "rework" / "fixed.jsonl")], eval_sets=[eval_set], verify=False) == 0
    reasons = {q["rework"]["reasons"][0][:4] for q in quarantined}
    assert reasons == {"E010", "E013"} and all(q["rework"]["original_id"] for q in quarantined)


def test_entries_give_the_records_a_rework_holds(tmp_path, eval_set):
    """The public API a caller builds its own rework from: an untouched record as read, a fixed one with
    its parent, a quarantined one with its errors and the file:line it came from."""
    decomposed = unicodedata.normalize("NFD", "Café au lait is a drink.")
    plain, dup = claim("Paris is in France."), claim("Rome is in Italy.")
    path = write(tmp_path, [plain, claim_record(decomposed, True, world="facts-test", kind="k"), dup, dup])
    entries, _ = lint_files([path], [eval_set], verify=False)
    untouched, repaired, first, again = entries
    assert untouched.fixed_record() == plain and not untouched.quarantined
    assert repaired.fixed and repaired.fixed_record()["parent"] == repaired.original_id != repaired.rec["id"]
    assert not first.quarantined and again.quarantined
    note = again.quarantine_record()["rework"]
    assert note["source"] == f"{path}:4" and note["original_id"] == dup["id"]
    assert [r[:4] for r in note["reasons"]] == ["E010"] == [d.code for d in again.diags]


def test_missing_eval_set_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        lint_files([write(tmp_path, [claim("A b c.")])], [str(tmp_path / "nope")], verify=False)
