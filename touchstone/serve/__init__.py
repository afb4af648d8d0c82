"""`touchstone serve`: the web app and JSON API over the library the command line uses.

    touchstone serve                                   # ./workspace, its champion, http://127.0.0.1:8000
    touchstone serve --model runs/judge --port 8080    # a model of your own
    TOUCHSTONE_TOKEN=... touchstone serve --host 0.0.0.0

Pages: Compare (/), Debate (/debate), Loop (/loop), Models (/models); the API under /api/v1 (its
OpenAPI document at /docs). Judging, verifying, debating and the loop are the library's own functions:
`Judge.pairs`/`claims` (through `AsyncJudge`), `World.verify_many`, `debate.argue`, `touchstone run`.

Guaranteed:
- questions that arrive together are judged in shared forward passes (`AsyncJudge`, a bounded wait of
  `ServeConfig.batch_wait` seconds), and a request's judging time is bounded (`judge_seconds`, then a 503);
- loopback only unless a token is given; with one, every page and API call needs it (compared in
  constant time), and the server refuses to start on another address without one;
- bodies over `ServeConfig.max_body_bytes` are a 413, text over `api.judge.MAX_CHARS` characters a
  422 naming the field, malformed JSON a 422; an unexpected failure is a 500 with one line, never a traceback;
- requests that change state (POST) from another site are refused (their Origin must be this
  server); there is no CORS;
- code from a request runs only in the code world's sandbox (`touchstone.sandbox`), with its limits;
- Retrain runs `touchstone run` in a child process that dies with the server (Linux: the parent-death
  signal), so a killed server leaves the workspace as a killed `touchstone run` does: resumable. The
  workspace lock still allows one loop at a time.
Not guaranteed: the server reads the workspace while a loop writes it, so a page may show a step
that finished a moment ago as still running; TLS (put a proxy in front when binding beyond loopback).
"""

from __future__ import annotations

from touchstone.serve.app import ServeConfig, create_app, serve

__all__ = ["ServeConfig", "create_app", "serve"]
