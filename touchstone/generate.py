"""Using a trained model: load it, sample text from it, measure its perplexity on a text file.

The inference side, beside `touchstone.judge`; training (`touchstone.train`) loads its base models and
samples its reports with it.

    touchstone generate models/gen-0000 --prompt "The river" --temperature 0.8 --top-k 50 --n 3
    touchstone perplexity models/gen-0000 ../shared/data/wikitext2/test.txt

Guaranteed:
- `load_model` accepts a Touchstone model directory (its MANIFEST.json is checked, so a corrupt or
  partial one is a one-line error) or any local Hugging Face causal-LM directory with a tokenizer;
- `generate` is reproducible for a given seed and leaves the caller's global RNG state untouched;
  temperature 0 means greedy decoding;
- `perplexity` scores every token of the file exactly once, each with up to a full context window
  of preceding text (strided sliding windows), the first token conditioned on <|endoftext|>. Bits per
  byte = total negative log-likelihood in bits / UTF-8 bytes of the file, so it compares models with
  different tokenizers.

Not guaranteed: identical samples across torch versions or thread counts.
"""

from __future__ import annotations

import math
from pathlib import Path

from touchstone.distributed import ONE_PROCESS, Shards
from touchstone.errors import UserError
from touchstone.files import MANIFEST, check_manifest, read_text
from touchstone.model import FAST_GELU, context_length

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def load_model(model_dir: str | Path):
    """(model in eval mode, tokenizer) from a model directory; UserError if it is not a complete model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such model directory")
    if (path / MANIFEST).exists():
        check_manifest(path)
    elif not (path / "config.json").is_file() or not any((path / w).is_file() for w in WEIGHTS):
        raise UserError(f"{path}: not a complete model directory (needs config.json and weights)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        config = AutoConfig.from_pretrained(str(path))
        if getattr(config, "activation_function", None) == "gelu_new":  # a GPT-2 saved before FAST_GELU
            config.activation_function = FAST_GELU
        model = AutoModelForCausalLM.from_pretrained(str(path), config=config, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - see below
        # Whatever broken files make transformers, safetensors or torch raise (OSError, ValueError,
        # SafetensorError, UnpicklingError...), the cause is the directory's content.
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"{path}: cannot load model ({first})") from None
    model.eval()
    return model, tokenizer


def sample(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int = 50,
    top_p: float = 0.95,
    n: int = 1,
    seed: int = 0,
) -> list[str]:
    """`n` continuations of `prompt` (the prompt itself not included) from a loaded model."""
    import torch

    if max_new_tokens < 1 or n < 1:
        raise UserError("generate: max_new_tokens and n must be at least 1")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise UserError("generate: need temperature >= 0, 0 < top_p <= 1, top_k >= 0")
    eos = tokenizer.eos_token_id
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    if eos is not None:
        ids = [eos] + ids  # the model was trained on documents that follow <|endoftext|>
    if not ids:
        raise UserError("generate: empty prompt and the tokenizer has no end-of-text token to start from")
    keep = max(1, context_length(model) - max_new_tokens)
    ids = ids[-keep:]
    max_new_tokens = min(max_new_tokens, context_length(model) - len(ids))
    x = torch.tensor([ids] * n, device=model.device)
    greedy = temperature == 0
    options = {} if greedy else {"temperature": temperature, "top_k": top_k or None, "top_p": top_p}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        y = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=max_new_tokens,
            do_sample=not greedy,
            pad_token_id=eos if eos is not None else tokenizer.pad_token_id,
            **options,
        )
    return [tokenizer.decode(row[len(ids) :], skip_special_tokens=True) for row in y]


def generate(model_dir: str | Path, prompt: str, **settings) -> list[str]:
    """`sample` from the model in `model_dir`: continuations of `prompt` (not included), with `sample`'s
    settings (max_new_tokens, temperature, top_k, top_p, n, seed) and its defaults."""
    model, tokenizer = load_model(model_dir)
    return sample(model, tokenizer, prompt, **settings)


def perplexity(model_dir: str | Path, text_file: str | Path, batch_size: int = 8) -> dict:
    """Perplexity per token and bits per UTF-8 byte of the model on the whole of `text_file`."""
    text = read_text(text_file)  # before the model loads: a bad file is reported at once
    if not text.strip():
        raise UserError(f"{text_file}: the text is empty")
    model, tokenizer = load_model(model_dir)
    return perplexity_of(model, tokenizer, text, batch_size)


def perplexity_of(model, tokenizer, text: str, batch_size: int = 8, shards: Shards = ONE_PROCESS) -> dict:
    """Perplexity per token and bits per UTF-8 byte of `text` (strided windows, every token scored once).
    `shards`: the windows' batches split over a launcher's processes; the sum is taken in one order, so
    the figure is one process's."""
    import torch
    import torch.nn.functional as F

    if not text.strip():
        raise UserError("perplexity: the text is empty")
    eos = tokenizer.eos_token_id
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor(([eos] if eos is not None else []) + ids, device=model.device)
    n_targets = len(ids) - 1  # ids[t] is predicted from ids[:t], for t = 1 .. n_targets
    width = min(context_length(model), len(ids))
    stride = max(1, width // 2)
    # Equal-width windows ids[s:s+width]; each scores the targets (a, e] that the previous window did
    # not, so every token counts once and has at least width - stride tokens of context.
    spans, a = [], 0
    while a < n_targets:
        e = min(a + (width if a == 0 else stride), n_targets)
        spans.append((max(0, e - width), a, e))
        a = e

    def score(group: list[tuple[int, int, int]]) -> list[float]:
        x = torch.stack([ids[s : s + width] for s, _, _ in group])
        logp = F.log_softmax(model(input_ids=x).logits.float(), dim=-1)
        out = []
        for row, (s, a, e) in enumerate(group):
            positions = torch.arange(a - s, e - s, device=ids.device)  # position p predicts ids[s + p + 1]
            out.append(float(logp[row, positions, ids[a + 1 : e + 1]].sum()))
        return out

    groups = [spans[i : i + batch_size] for i in range(0, len(spans), batch_size)]
    nll = 0.0
    with torch.no_grad():
        for window_logps in shards.map(score, groups):
            for logp_sum in window_logps:
                nll -= logp_sum
    n_bytes = len(text.encode("utf-8"))
    return {
        "perplexity": math.exp(nll / n_targets),
        "bits_per_byte": nll / math.log(2) / n_bytes,
        "tokens": n_targets,
        "bytes": n_bytes,
    }
