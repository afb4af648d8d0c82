"""The held-out suites are versioned data: their records change only with their world's version. Each
suite's hash is pinned here; a change that alters a suite must bump the world's `version` (which
re-scores every model on it) and update the hash below in the same commit."""

from __future__ import annotations

import hashlib
import json

import pytest

from touchstone.files import shared_data
from touchstone.synth import heldout_suite

# The colour suite depends on whether the XKCD names are in the shared data (`ColourWorld.inputs`).
XKCD = (shared_data() / "xkcd_colors" / "rgb.txt").is_file()

# sha256 (first 16 hex digits) of the canonical JSON of (version, records) of each suite.
SUITES = [
    ("numbers", "4a3cec5f7a670891"),
    ("facts", "cbe43b5d8de97dbe"),
    ("facts-untaught", "bfe0be09be66385e"),
    ("colour", "f00ea87d439bce58" if XKCD else "409d183463e2aee6"),
    ("language", "22a1e3a581ba3a74"),  # over the embedded default corpus
    ("wing", "5dabfa6e3f5dc5e3"),
    pytest.param("code", "661d6c9ec82483fd", marks=pytest.mark.slow),  # 600 records through the sandbox
]


def suite_hash(name: str) -> str:
    blob = json.dumps(heldout_suite(name), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@pytest.mark.parametrize("name,expected", SUITES)
def test_heldout_suite_content_is_pinned(name, expected):
    assert suite_hash(name) == expected, f"the {name} suite changed: bump the world's version and this hash"
