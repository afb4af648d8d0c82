"""The held-out suites are versioned data: their records change only with their world's version. Each
suite's hash is pinned here; a change that alters a suite must bump the world's `version` (which
re-scores every model on it) and update the hash below in the same commit."""

from __future__ import annotations

import hashlib
import json

import pytest

from touchstone.files import shared_data
from touchstone.synth import heldout_suite

SHARED = shared_data()
# Colour suites depend on whether the XKCD names are present, language suites on the evaluation sets
# their sentences are kept out of (`touchstone.worlds.language.eval_sentences`).
needs_xkcd = pytest.mark.skipif(not (SHARED / "xkcd_colors" / "rgb.txt").is_file(), reason="XKCD colours absent")
needs_eval_sets = pytest.mark.skipif(not ((SHARED / "blimp" / "data").is_dir()
                                          and (SHARED / "wikitext2" / "raw" / "wiki.test.raw").is_file()),
                                     reason="BLiMP or WikiText-2 absent")

# sha256 (first 16 hex digits) of the canonical JSON of (version, records) of each suite.
SUITES = [
    ("numbers", "4a3cec5f7a670891"),
    ("facts", "cbe43b5d8de97dbe"),
    ("facts-untaught", "bfe0be09be66385e"),
    pytest.param("colour", "409d183463e2aee6", marks=needs_xkcd),
    pytest.param("language", "22a1e3a581ba3a74", marks=needs_eval_sets),
    ("wing", "5dabfa6e3f5dc5e3"),
    pytest.param("code", "661d6c9ec82483fd", marks=pytest.mark.slow),  # 600 records through the sandbox
]


def suite_hash(name: str) -> str:
    blob = json.dumps(heldout_suite(name), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@pytest.mark.parametrize("name,expected", SUITES)
def test_heldout_suite_content_is_pinned(name, expected):
    assert suite_hash(name) == expected, f"the {name} suite changed: bump the world's version and this hash"
