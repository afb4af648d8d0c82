"""Data-parallel fine-tuning under torchrun on the CPU (gloo): two processes equal one with their joint batch."""

import json

import pytest
from test_finetune import records
from test_judge import TEXT, tiny_model_dir
from test_pretrain import weights
from test_pretrain_ddp import torchrun

from touchstone.files import check_manifest, write_jsonl_atomic
from touchstone.train.finetune import FinetuneConfig, finetune

BATCH, EPOCHS, LR = 4, 2, 3e-3  # records per process and step; a step of two processes trains on 2 * BATCH
TOLERANCE = 1e-5  # float rounding differs (summation order, thread count); in fp32 it stays well below this


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """12 records (6 pairs, 6 claims), a tiny model without dropout, and text for the language-model loss."""
    import numpy as np
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp("ft-ddp")
    write_jsonl_atomic(d / "train.jsonl", records(6))
    model = tiny_model_dir(d)
    # Dropout draws its masks per process: two processes could not equal one with it.
    config = json.loads((model / "config.json").read_text())
    config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    (model / "config.json").write_text(json.dumps(config))
    tok = AutoTokenizer.from_pretrained(str(model))
    ids = np.array(tok(TEXT)["input_ids"] * 3, dtype=np.uint16)
    (d / "text" / "tokens").mkdir(parents=True)
    ids[: len(ids) * 3 // 4].tofile(d / "text" / "tokens" / "train.bin")
    ids[len(ids) * 3 // 4 :].tofile(d / "text" / "tokens" / "val.bin")
    return d, model


def test_two_processes_equal_one_with_their_joint_batch(setup, tmp_path):
    """Every objective term (answer, pairwise, language model) on each rank's share, gradients summed: the
    weights of two processes with BATCH records each are those of one process with 2 * BATCH."""
    d, model = setup
    data, text = str(d / "train.jsonl"), str(d / "text")
    two, config = tmp_path / "two", tmp_path / "fp32.yaml"
    config.write_text("bf16: false\n")  # bf16 rounds the shares and the whole batch too differently to compare
    torchrun(
        "-m",
        "touchstone",
        "finetune",
        str(model),
        "--data",
        data,
        "--out",
        str(two),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH),
        "--lr",
        str(LR),
        "--objective",
        "mix",
        "--text-data",
        text,
        "--lm-weight",
        "1.0",
        "--config",
        str(config),
    )
    manifest = check_manifest(two)
    one = finetune(
        model,
        [data],
        tmp_path / "one",
        FinetuneConfig(
            epochs=EPOCHS, batch_size=2 * BATCH, lr=LR, objective="mix", text_data=text, lm_weight=1.0, bf16=False
        ),
    )
    assert manifest["world_size"] == 2 and manifest["records_per_step"] == 2 * BATCH
    assert manifest["steps"] == one["steps"] == 3  # 12 records x 2 epochs / 8 a step
    assert manifest["loss_first"] == pytest.approx(one["loss_first"], rel=1e-5)  # the summed loss of the shares
    a, b, base = weights(tmp_path / "one"), weights(two), weights(model)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < TOLERANCE
    # Far below what training moved the weights, so the comparison above can tell the runs apart.
    assert max(float((a[k] - base[k]).abs().max()) for k in a if k in base) > 100 * TOLERANCE
    assert not list(tmp_path.glob(".two*"))  # rank 0 saved once, leaving no staging behind
