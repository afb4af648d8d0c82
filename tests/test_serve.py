"""`touchstone serve` through FastAPI's test client and a live loopback server: every endpoint, its errors
(422, 404, 409, 413, 401/403), that the judge's answer is exactly `Judge.pairs`, the tool's verdict
beside it, the token and origin checks, and Retrain on a tiny workspace, streamed and killed mid-way."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_debate import A as DEBATE_A
from test_debate import B as DEBATE_B
from test_judge import tiny_model_dir
from test_loop import needs_corpus, tiny_config

from touchstone import cli
from touchstone.errors import UserError
from touchstone.judge import Judge
from touchstone.loop.history import history, status
from touchstone.loop.run import run
from touchstone.loop.workspace import Workspace, check_invariants
from touchstone.serve import ServeConfig, create_app
from touchstone.serve.app import check_config, make_server

WING_A, WING_B = DEBATE_A, DEBATE_B  # the debate tests' two designs


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("serve-model"))


@pytest.fixture(scope="module")
def client(model_dir, tmp_path_factory):
    cfg = ServeConfig(workspace=str(tmp_path_factory.mktemp("empty") / "ws"), model=str(model_dir))
    with TestClient(create_app(cfg)) as c:
        yield c


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory):
    """A tiny workspace after generation 0 (nano model, two worlds), copied by each test that changes it."""
    root = tmp_path_factory.mktemp("serve-loop") / "ws"
    run(root, tiny_config(), generations=0)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(cfg: ServeConfig):
    """The app under uvicorn on a free loopback port, in a thread; yields its base URL."""
    cfg.port = free_port()
    server = make_server(create_app(cfg), "127.0.0.1", cfg.port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{cfg.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def events(url: str, until, timeout: float = 240):
    """Server-sent events (name, data) from `url` until `until(name, data)` is true."""
    import httpx

    seen = []
    with httpx.stream("GET", url, timeout=timeout) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                seen.append((name, json.loads(line[6:])))
                if until(*seen[-1]):
                    return seen
    raise AssertionError(f"stream ended before the awaited event: {[n for n, _ in seen]}")


# -------------------------------------------------------------------------------------------- judging
def test_judge_pair_is_exactly_judge_pairs(client, model_dir):
    q = {"prompt": "Which is grammatical?", "a": "The cats sleep.", "b": "The cats sleeps."}
    r = client.post("/api/v1/judge/pair", json=q)
    assert r.status_code == 200
    body = r.json()
    assert body["judge"] == Judge.load(model_dir).pairs([q])[0]
    assert body["model"] == model_dir.name and body["verifier"] is None and body["agree"] is None
    # each order's reading: their log-odds average to the verdict's
    import math

    def logit(p):
        return math.log(p / (1 - p))

    o = body["orders"]
    assert (logit(o["a_first"]) + logit(o["b_first"])) / 2 == pytest.approx(logit(body["judge"]["p_a"]), abs=1e-9)


def test_judge_claim_is_exactly_judge_claims_with_the_facts_tool_beside_it(client, model_dir):
    r = client.post("/api/v1/judge/claim", json={"statement": "Paris is the capital of France."})
    assert r.status_code == 200
    body = r.json()
    assert body["judge"] == Judge.load(model_dir).claims([{"statement": "Paris is the capital of France."}])[0]
    assert body["verifier"]["world"] == "facts" and body["verifier"]["answer"] is True
    assert body["agree"] == (body["judge"]["choice"] is True)


def test_the_tool_answers_each_worlds_own_question(client):
    examples = client.get("/api/v1/examples").json()
    assert {e["world"] for e in examples} == {"numbers", "code", "colour", "facts", "wing"}
    for ex in examples:
        body = client.post("/api/v1/judge/pair", json={k: ex[k] for k in ("prompt", "a", "b")}).json()
        tool = body["verifier"]
        assert tool["world"] == ex["world"] and tool["answer"] in ("a", "b"), ex
        assert body["agree"] == (body["judge"]["choice"] == tool["answer"])
        swapped = client.post("/api/v1/judge/pair", json={"prompt": ex["prompt"], "a": ex["b"], "b": ex["a"]}).json()
        assert swapped["verifier"]["answer"] == {"a": "b", "b": "a"}[tool["answer"]]


def test_the_evidence_a_person_wants_to_see(client):
    tool = client.post("/api/v1/judge/pair", json={"prompt": "What is 17 plus 25?", "a": "43", "b": "42"}).json()[
        "verifier"
    ]
    assert tool == {"world": "numbers", "answer": "b", "reason": None, "evidence": {"actual": 42, "correct": "b"}}
    tool = client.post(
        "/api/v1/judge/pair", json={"prompt": "What is the name of the colour #ff0000?", "a": "red", "b": "blue"}
    ).json()["verifier"]
    assert tool["answer"] == "a" and tool["evidence"]["a"]["nearest_reference"] == "#ff0000"
    assert tool["evidence"]["b"]["nearest_reference"].startswith("#")
    test = "def check(candidate):\n    assert candidate(2) == 4\n"
    tool = client.post(
        "/api/v1/judge/pair",
        json={
            "prompt": f"Which version of `double` passes these tests?\n\n{test}",
            "a": "def double(x):\n    return x * 2\n",
            "b": "def double(x):\n    return x / 0\n",
        },
    ).json()["verifier"]
    assert tool["world"] == "code" and tool["answer"] == "a"
    assert (
        tool["evidence"]["b"]["reason"] == "runtime_error"
        and "ZeroDivisionError" in tool["evidence"]["b"]["evidence"]["message"]
    )


def test_code_from_a_request_runs_in_the_sandbox_with_its_limits(client, tmp_path):
    marker = tmp_path / "escaped"
    test = "def check(candidate):\n    assert candidate() == 1\n"
    body = {
        "prompt": f"Which version of `f` passes these tests?\n\n{test}",
        "a": f"def f():\n    open({str(marker)!r}, 'w').write('x')\n    return 1\n",
        "b": "def f():\n    while True:\n        pass\n",
    }
    tool = client.post("/api/v1/judge/pair", json=body).json()["verifier"]
    assert tool["evidence"]["b"]["reason"] == "timeout"  # the sandbox's wall-clock limit
    from touchstone.sandbox import shared_sandbox

    if "read_only_fs" in shared_sandbox().guarantees:  # with bubblewrap: nothing outside its private /tmp
        assert tool["evidence"]["a"]["reason"] == "runtime_error" and not marker.exists()


def test_missing_fields_and_malformed_json_are_422_naming_the_field(client):
    r = client.post("/api/v1/judge/pair", json={"prompt": "q", "a": "x"})
    assert r.status_code == 422 and r.json()["detail"] == "body.b: Field required"
    r = client.post("/api/v1/judge/pair", content=b'{"a": "x", ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body: malformed JSON")
    r = client.post("/api/v1/judge/claim", json={"statement": 3})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.statement:")
    r = client.post("/api/v1/loop/retrain", json={"generations": 0})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.generations:")


def test_text_over_the_cap_is_422_and_a_body_over_the_cap_413(client):
    from touchstone.serve.api.judge import MAX_CHARS

    r = client.post("/api/v1/judge/pair", json={"a": "x" * (MAX_CHARS + 1), "b": "y"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.a: String should have at most")
    big = json.dumps({"a": "x", "b": "y", "prompt": "z" * 300_000}).encode()
    assert (
        client.post("/api/v1/judge/pair", content=big, headers={"content-type": "application/json"}).status_code == 413
    )

    def chunks():  # no Content-Length: the cap counts what arrives
        yield b'{"a": "x", "b": "y", "prompt": "'
        for _ in range(40):
            yield b"z" * 10_000
        yield b'"}'

    r = client.post("/api/v1/judge/pair", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_a_judgement_that_takes_too_long_is_503_and_the_judge_goes_on(model_dir, tmp_path):
    cfg = ServeConfig(workspace=str(tmp_path / "ws"), model=str(model_dir), judge_seconds=1e-6)
    with TestClient(create_app(cfg)) as c:
        for _ in range(3):
            r = c.post("/api/v1/judge/pair", json={"a": "x", "b": "y"})
            assert r.status_code == 503 and "did not answer within" in r.json()["detail"]
        cfg.judge_seconds = 60.0  # the callers that gave up did not break the batcher
        assert c.post("/api/v1/judge/pair", json={"a": "x", "b": "y"}).status_code == 200


def test_no_model_is_503_saying_what_to_do(tmp_path):
    with TestClient(create_app(ServeConfig(workspace=str(tmp_path / "ws")))) as c:
        r = c.post("/api/v1/judge/pair", json={"a": "x", "b": "y"})
        assert r.status_code == 503 and "no champion yet" in r.json()["detail"]


# ------------------------------------------------------------------------------------- verify, debate
def test_verify_gives_the_worlds_verdict(client):
    rec = {"prompt": "What is 2 plus 2?", "a": "4", "b": "5", "label": "a"}
    r = client.post("/api/v1/verify/numbers", json=rec)
    assert r.status_code == 200 and r.json()["ok"] and r.json()["reason"] == "agrees"
    assert client.post("/api/v1/verify/numbers", json={**rec, "label": "b"}).json()["reason"] == "label_disagrees"
    r = client.post("/api/v1/verify/numbers", json={"op": "sum", "x": 2, "y": 2, "claimed": 5})  # a raw item
    assert r.json()["reason"] == "wrong_answer" and r.json()["evidence"]["actual"] == 4
    r = client.post("/api/v1/verify/facts", json={"statement": "Paris is the capital of France.", "label": "yes"})
    assert r.json()["ok"]
    r = client.post("/api/v1/verify/planets", json=rec)
    assert r.status_code == 404 and "unknown world 'planets'" in r.json()["detail"]
    r = client.post("/api/v1/verify/numbers", json={"prompt": "q", "a": "1", "b": "2"})
    assert r.status_code == 422 and r.json()["detail"] == "body: missing key 'label'"
    r = client.post("/api/v1/verify/numbers", json={"op": "sum", "x": 2})
    assert r.status_code == 422 and "missing key" in r.json()["detail"]


def test_debate_returns_the_argument_figures_and_drawing(client):
    from touchstone.debate import argue
    from touchstone.worlds.wing import analyze

    r = client.post("/api/v1/debate", json={"a": WING_A, "b": WING_B})
    assert r.status_code == 200
    body = r.json()
    a, b = body["designs"]["a"], body["designs"]["b"]
    assert b["speed"] == WING_A["speed"]  # B flies A's mission
    assert body["text"] == argue(body["choice"], body["confidence"], a, b)
    assert body["figures"]["a"]["L_over_D"] == pytest.approx(analyze(a)["L_over_D"])
    assert body["simulator"]["better"] in ("a", "b")
    import base64

    assert base64.b64decode(body["drawing"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_debate_errors_name_the_design_and_key(client):
    r = client.post("/api/v1/debate", json={"a": WING_A, "b": {**WING_B, "speed": 60}})
    assert r.status_code == 422 and r.json()["detail"] == (
        "design B: key 'speed' differs from design A: both designs must fly the same mission"
    )
    r = client.post("/api/v1/debate", json={"a": {**WING_A, "taper": 0}, "b": WING_B})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.a.taper:")
    a = {k: v for k, v in WING_A.items() if k != "weight"}
    r = client.post("/api/v1/debate", json={"a": a, "b": WING_B})
    assert r.status_code == 422 and r.json()["detail"] == "design A: missing key 'weight'"


def test_random_designs_come_from_the_wing_world(client):
    a = client.get("/api/v1/wing/random", params={"seed": 3}).json()
    assert a == client.get("/api/v1/wing/random", params={"seed": 3}).json() and a["airfoil"].startswith("naca")
    b = client.post("/api/v1/wing/variant", json=a, params={"seed": 1}).json()
    assert b != a and all(b[k] == a[k] for k in ("speed", "altitude", "weight", "alpha_limit", "max_span"))


# ------------------------------------------------------------------------------------------- safety
def test_a_token_is_needed_on_every_page_and_call(model_dir, tmp_path):
    cfg = ServeConfig(workspace=str(tmp_path / "ws"), model=str(model_dir), token="s3cret-t0ken")
    with TestClient(create_app(cfg)) as c:
        for path in ("/", "/loop", "/docs", "/openapi.json", "/api/v1/models", "/static/app.js"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403, path
            assert c.get(path, headers={"Authorization": "Bearer s3cret-t0ken"}).status_code == 200, path
        assert c.post("/api/v1/judge/pair", json={"a": "x", "b": "y"}).status_code == 401
        assert (
            c.post(
                "/api/v1/loop/retrain", json={"generations": 1}, headers={"Authorization": "Bearer nope"}
            ).status_code
            == 403
        )
        r = c.get("/loop?token=s3cret-t0ken", follow_redirects=False)  # a browser's first visit
        assert r.status_code == 303 and r.headers["location"] == "/loop"
        assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
        assert c.get("/loop").status_code == 200  # the cookie carries it from now on


def test_cross_site_posts_are_refused(client):
    evil = {"Origin": "http://evil.example"}
    r = client.post("/api/v1/loop/retrain", json={"generations": 1}, headers=evil)
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = client.post("/api/v1/judge/pair", json={"a": "x", "b": "y"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    same = {"Origin": "http://testserver"}
    assert client.post("/api/v1/judge/pair", json={"a": "x", "b": "y"}, headers=same).status_code == 200
    assert "access-control-allow-origin" not in client.get("/api/v1/models", headers=evil).headers  # no CORS


def test_retrain_is_post_only(client):
    assert client.get("/api/v1/loop/retrain").status_code == 405


def test_another_address_without_a_token_refuses_to_start(capsys, monkeypatch):
    monkeypatch.delenv("TOUCHSTONE_TOKEN", raising=False)
    with pytest.raises(UserError, match="not loopback"):
        check_config(ServeConfig(host="0.0.0.0"))
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--token" in err
    monkeypatch.setenv("TOUCHSTONE_TOKEN", "from-the-environment")
    assert check_config(ServeConfig(host="0.0.0.0")).token == "from-the-environment"
    assert check_config(ServeConfig(host="::1")).host == "::1"


# ------------------------------------------------------------------------------------ loop and models
def test_the_loops_output_becomes_lines_however_long_its_progress_bars(tmp_path):
    import asyncio

    from touchstone.serve.state import LoopRunner

    async def read(data: bytes) -> list[str]:
        class Child:
            stdout = asyncio.StreamReader()

        Child.stdout.feed_data(data)
        Child.stdout.feed_eof()
        runner = LoopRunner(Workspace(tmp_path))
        await runner._read_output(Child)
        return list(runner.log)

    bar = "".join(f"\rtrain {i}/100000" for i in range(100_000))  # 1.7 MB without a newline
    lines = asyncio.run(read(f"[12:00:00] generation 1: train\r\n{bar}\ndone é\n".encode()))
    assert lines == ["[12:00:00] generation 1: train", "train 99999/100000", "done é"]


@needs_corpus
def test_status_history_and_models_are_what_the_cli_shows(bootstrapped, model_dir, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(bootstrapped, root)
    with TestClient(create_app(ServeConfig(workspace=str(root), model=str(model_dir)))) as c:
        s = c.get("/api/v1/loop/status").json()
        assert s["text"] == status(root) and s["champion"] == "gen-0000" and s["finished"] == 0
        assert set(s["held_out"]) == {"numbers", "facts"}
        h = c.get("/api/v1/loop/history").json()
        assert history(root).startswith(h["markdown"]) and h["generations"][0]["decision"] == "initial"
        before = sorted(p.name for p in root.rglob("*"))
        models = {m["name"]: m for m in c.get("/api/v1/models").json()}
        assert models["gen-0000"]["champion"] and models["gen-0000"]["stage"] == "pretrain"
        assert model_dir.name in models  # the served --model is listed too
        rep = c.get("/api/v1/models/gen-0000/report").json()
        assert rep["eval"]["numbers"]["n"] > 0 and rep["recipe"]["stage"] == "pretrain"
        assert "<h1>Pretraining report</h1>" in rep["report_html"]["report.md"]
        assert c.get("/api/v1/models/gen-0000/files/report.md").status_code == 200
        assert c.get("/api/v1/models/gen-0000/files/..%2Frecipe.yaml").status_code in (404, 422)
        assert c.get("/api/v1/models/gen-0000/files/config.json").status_code == 422
        assert c.get("/api/v1/models/gen-9999/report").status_code == 404
        for page in ("/", "/debate", "/loop", "/models", "/models/gen-0000"):
            assert c.get(page).status_code == 200, page
        assert sorted(p.name for p in root.rglob("*")) == before  # reading never writes the workspace


def test_a_models_markdown_report_is_rendered_with_its_plots(model_dir, tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    m = tmp_path / "judge-x"
    shutil.copytree(model_dir, m)
    (m / "eval.md").write_text(
        "# Evaluation\n\n| task | accuracy |\n|---|---|\n| suite:code | 65.7% |\n\n"
        "![eval-tasks.png](eval-tasks.png)\n\n<script>alert(1)</script>\n"
    )
    (m / "eval-tasks.png").write_bytes(png)
    (m / "loose.png").write_bytes(png)
    with TestClient(create_app(ServeConfig(workspace=str(tmp_path / "ws"), model=str(m)))) as c:
        rep = c.get("/api/v1/models/judge-x/report").json()
        html = rep["report_html"]["eval.md"]
        assert '<img src="/api/v1/models/judge-x/files/eval-tasks.png"' in html and "<table>" in html
        assert "<script>" not in html  # a report's raw HTML is shown as text
        assert rep["plots"] == ["/api/v1/models/judge-x/files/eval-tasks.png", "/api/v1/models/judge-x/files/loose.png"]
        assert c.get("/api/v1/models/judge-x/files/eval-tasks.png").content == png
        page = c.get("/models/judge-x").text
        assert page.count("files/eval-tasks.png") == 1 and page.count("files/loose.png") == 1


def test_a_rejected_challengers_report_stays_readable_after_its_weights_are_deleted(model_dir, tmp_path):
    root = tmp_path / "ws"
    kept = root / "models" / "gen-0001"
    kept.mkdir(parents=True)
    (kept / "report.md").write_text("# Fine-tuning report\n\nrejected: 0.498 vs 0.509\n")
    (kept / "recipe.yaml").write_text("stage: finetune\nloop: {generation: 1, base: gen-0000}\n")
    (root / "models" / "gen-0002").mkdir()  # neither weights nor a report: not a model
    with TestClient(create_app(ServeConfig(workspace=str(root), model=str(model_dir)))) as c:
        models = {m["name"]: m for m in c.get("/api/v1/models").json()}
        assert models["gen-0001"]["weights"] is False and models[model_dir.name]["weights"] is True
        assert "gen-0002" not in models
        assert models["gen-0001"]["generation"] == 1 and models["gen-0001"]["trained_from"] == "gen-0000"
        page = c.get("/models/gen-0001").text
        assert "Fine-tuning report" in page and "weights deleted" in page
        assert "report only" in c.get("/models").text


def test_status_of_a_missing_workspace_is_404(client):
    r = client.get("/api/v1/loop/status")
    assert r.status_code == 404 and "not a Touchstone workspace" in r.json()["detail"]
    assert client.get("/api/v1/loop/history.png").status_code == 404
    assert client.get("/loop").status_code == 200  # the page says so and offers Retrain


@needs_corpus
def test_retrain_is_409_while_another_loop_holds_the_workspace(bootstrapped, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(bootstrapped, root)
    with TestClient(create_app(ServeConfig(workspace=str(root)))) as c, Workspace(root).lock():
        r = c.post("/api/v1/loop/retrain", json={"generations": 1})
        assert r.status_code == 409 and "in use by another loop" in r.json()["detail"]


@needs_corpus
def test_retrain_runs_generations_and_streams_their_progress(bootstrapped, tmp_path):
    import httpx

    root = tmp_path / "ws"
    shutil.copytree(bootstrapped, root)
    with live_server(ServeConfig(workspace=str(root))) as url:
        r = httpx.post(url + "/api/v1/loop/retrain", json={"generations": 1})
        assert r.status_code == 202 and r.json()["running"]
        again = httpx.post(url + "/api/v1/loop/retrain", json={"generations": 1})
        assert again.status_code == 409 and "already running" in again.json()["detail"]
        seen = events(url + "/api/v1/loop/events", lambda name, data: name == "finished")
        assert httpx.get(url + "/api/v1/loop/run").json()["run"]["returncode"] == 0
        s = httpx.get(url + "/api/v1/loop/status").json()
        assert s["finished"] == 1 and s["text"] == status(root)
        plot = httpx.get(url + "/api/v1/loop/history.png")
        assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
    percents = [d["percent"] for name, d in seen if name == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100.0 and len(set(percents)) >= 3
    steps = {d["step"] for name, d in seen if name == "progress"}
    assert {"train", "gate"} <= steps
    decisions = [d for name, d in seen if name == "decision"]
    assert (
        len(decisions) == 1 and decisions[0]["generation"] == 1 and decisions[0]["decision"] in ("promoted", "rejected")
    )
    assert decisions[0]["p_value"] is not None and set(decisions[0]["suites_challenger"]) == {"numbers", "facts"}
    assert any(name == "log" for name, _ in seen)
    assert check_invariants(root) == []


@needs_corpus
def test_a_server_killed_mid_generation_leaves_the_workspace_resumable(bootstrapped, tmp_path):
    import httpx

    from touchstone.loop.ledger import Ledger

    root = tmp_path / "ws"
    shutil.copytree(bootstrapped, root)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    server = subprocess.Popen(
        [sys.executable, "-m", "touchstone", "serve", "--workspace", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/api/v1/loop/run").status_code == 200:
                    break
            time.sleep(0.1)
        child = httpx.post(url + "/api/v1/loop/retrain", json={"generations": 1}).json()["run"]["pid"]
        deadline = time.monotonic() + 240
        while True:  # kill once the generation is under way (its first step done)
            assert time.monotonic() < deadline and server.poll() is None
            if (root / "ledger.sqlite").exists():
                ledger = Ledger(root / "ledger.sqlite")
                done = ledger.done_steps(1)
                ledger.close()
                if done:
                    break
            time.sleep(0.2)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
    for _ in range(100):  # the loop dies with its server
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the retrain outlived its server")
    assert check_invariants(root) == []
    assert run(root, tiny_config(), generations=1)["finished"] == 1  # resumed, as after a killed `touchstone run`
    assert check_invariants(root) == []
