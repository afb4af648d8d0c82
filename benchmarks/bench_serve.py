"""`touchstone serve` under load: /api/v1/judge/pair with 1, 8 and 64 concurrent clients on loopback,
the batching server (questions that arrive together share forward passes) against the same server
answering one request per forward pass (`ServeConfig.batch_size = 1`), measured in the same run.

    python benchmarks/bench_serve.py                         # a micro-sized model with random weights
    python benchmarks/bench_serve.py --model runs/judge --seconds 20

Each server runs in its own process (`touchstone.serve.serve`); the clients are one asyncio process of
httpx connections, each sending its next question as soon as the last is answered, for `--seconds`
per level after a short warm-up. The questions are sentence pairs that no world recognises, so the
tool's check costs little and the judge is what is measured. A micro model's forward pass costs the
same with trained or random weights, so the default needs no training. Prints per level: requests/s,
p50 and p99 latency of both servers, and the ratio of their requests/s (target at 64 clients: 5x, with
the batching server's p99 under 2 s on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBJECTS = ["The cat", "The dogs", "A teacher", "The children", "My neighbour", "The old sailors", "Every student"]
VERBS = [("sleeps", "sleep"), ("runs", "run"), ("writes", "write"), ("sings", "sing"), ("waits", "wait")]
ENDINGS = ["in the park.", "after dinner.", "near the river.", "every morning.", "without a word."]


def questions(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        subject, (sg, pl), end = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(ENDINGS)
        plural = subject.endswith("s") and not subject.startswith("Every")
        good, bad = (pl, sg) if plural else (sg, pl)
        a, b = f"{subject} {good} {end}", f"{subject} {bad} {end}"
        if rng.random() < 0.5:
            a, b = b, a
        out.append({"prompt": "Which sentence is better?", "a": a, "b": b})
    return out


def micro_model(out: Path) -> Path:
    """A micro-sized GPT-2 (random weights) with a tokenizer trained on the embedded corpus's text."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from touchstone.model import make_config
    from touchstone.tokenizer import train_from_texts

    text = " ".join(" ".join(q["a"] for q in questions(2000, seed=s)) for s in range(3))
    train_from_texts([text], out / "tok", vocab_size=2048)
    tok = AutoTokenizer.from_pretrained(str(out / "tok"))
    torch.manual_seed(0)
    GPT2LMHeadModel(make_config("micro", len(tok))).save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return out / "model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, workspace: Path, batch_size: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = (
        "import sys; from touchstone.serve import ServeConfig, serve; "
        f"serve(ServeConfig(workspace={str(workspace)!r}, model={str(model)!r}, port={port}, "
        f"batch_size={batch_size!r}))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL
    )
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(url: str, proc: subprocess.Popen) -> None:
    import httpx

    async with httpx.AsyncClient() as c:
        for _ in range(1200):
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with status {proc.returncode}")
            try:
                r = await c.post(url + "/api/v1/judge/pair", json=questions(1)[0], timeout=60)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not come up")


async def load(url: str, clients: int, seconds: float, warmup: float) -> dict:
    """`clients` connections, each asking its next question as soon as the last is answered."""
    import httpx

    qs = questions(4096, seed=clients)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as c:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + seconds

        async def client(i: int) -> None:
            nonlocal errors
            k = i
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                r = await c.post(url + "/api/v1/judge/pair", json=qs[k % len(qs)])
                t1 = time.perf_counter()
                k += clients
                if t0 >= measure_from and t1 <= stop_at:
                    if r.status_code == 200:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
    latencies.sort()

    def q(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {"rps": len(latencies) / seconds, "p50": q(0.50), "p99": q(0.99), "n": len(latencies), "errors": errors}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: a micro-sized model with random weights)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=2.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else micro_model(tmp)
        results = {}
        for name, batch_size in (("batched", None), ("one-per-pass", 1)):
            proc, url = start_server(model, tmp / "ws", batch_size)
            try:
                asyncio.run(wait_ready(url, proc))
                for n in args.clients:
                    results[name, n] = asyncio.run(load(url, n, args.seconds, args.warmup))
                    r = results[name, n]
                    print(
                        f"{name:>13} {n:>3} clients: {r['rps']:7.1f} req/s  p50 {1000 * r['p50']:7.1f} ms  "
                        f"p99 {1000 * r['p99']:7.1f} ms  ({r['n']} answered, {r['errors']} errors)",
                        flush=True,
                    )
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"\nmodel {model.name if args.model else 'micro (random weights)'}, {os.cpu_count()} CPUs visible")
    print(f"{'clients':>7} {'batched req/s':>14} {'one-per-pass req/s':>19} {'ratio':>6} {'batched p99 (ms)':>17}")
    for n in args.clients:
        b, s = results["batched", n], results["one-per-pass", n]
        print(f"{n:>7} {b['rps']:>14.1f} {s['rps']:>19.1f} {b['rps'] / s['rps']:>6.2f} {1000 * b['p99']:>17.0f}")


if __name__ == "__main__":
    main()
