"""The ledger: everything the loop did, in one SQLite file (WORKSPACE/ledger.sqlite). Its SQL and the
decoding of its JSON columns live here alone.

Tables
    generations  one row per generation: champion at its start, challenger, decision, reason, statistics
    steps        one row per finished step of a generation, with its wall time and a JSON summary
    candidates   per generation, world and source: candidates made, verified, rejected and why
    records      every verified record that entered data/new (id, world, type, label, verdict, source)
    data_counts  records per workspace directory after each generation
    metrics      accuracy per model and task (gate set, held-out suites)

A step's row is committed in the same transaction as everything that step records, after its files
are in place; so on restart a step with a row is done, and a step without one is redone from the
start (its files are replaced atomically, its rows replaced by key). SQLite's journal makes each
transaction all-or-nothing across `kill -9`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

from touchstone.errors import UserError

# The steps of generation 0 and of every generation after it, in order; a step's row in `steps` marks it done.
BOOTSTRAP_STEPS = ("prepare", "tokenizer", "pretrain", "baseline")
STEPS = ("synthesize", "verify", "rework", "recipe", "train", "gate")

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    gen INTEGER PRIMARY KEY, started REAL, finished REAL, champion_before TEXT, challenger TEXT,
    decision TEXT, reason TEXT, p_value REAL, stats TEXT);
CREATE TABLE IF NOT EXISTS steps (
    gen INTEGER, step TEXT, seconds REAL, finished REAL, summary TEXT, PRIMARY KEY (gen, step));
CREATE TABLE IF NOT EXISTS candidates (
    gen INTEGER, world TEXT, source TEXT, made INTEGER, verified INTEGER, rejected INTEGER, reasons TEXT,
    PRIMARY KEY (gen, world, source));
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, gen INTEGER, world TEXT, type TEXT, label TEXT, verdict TEXT, source TEXT);
CREATE TABLE IF NOT EXISTS data_counts (
    gen INTEGER, directory TEXT, records INTEGER, PRIMARY KEY (gen, directory));
CREATE TABLE IF NOT EXISTS metrics (
    gen INTEGER, model TEXT, task TEXT, accuracy REAL, n INTEGER, PRIMARY KEY (gen, model, task));
"""

# Each table's columns in order, read from SCHEMA: what an existing ledger must have.
_COLUMNS = {
    m[1]: [c.split()[0] for c in re.split(r",\s*(?![^()]*\))", m[2]) if not c.startswith("PRIMARY KEY")]
    for m in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\);", SCHEMA, re.DOTALL)
}


class Ledger:
    def __init__(self, path: str | Path):
        """Open (or create) the ledger; a file that is not one (garbage, truncated, another program's
        database, a directory) is a UserError naming it, and is left as it was."""
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise UserError(f"{self.path}: not a file (expected the workspace's SQLite ledger)")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as e:
            raise UserError(f"{self.path}: cannot open the ledger ({e})") from None
        try:
            tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "generations" not in tables:
                raise UserError(f"{self.path}: an SQLite database, but not a Touchstone ledger (no generations table)")
            if tables:
                (verdict,) = self.db.execute("PRAGMA quick_check").fetchone()
                if verdict != "ok":
                    raise UserError(f"{self.path}: corrupt ledger ({verdict})")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            for table, columns in _COLUMNS.items():
                have = [row[1] for row in self.db.execute(f"PRAGMA table_info({table})")]
                if have != columns:
                    raise UserError(f"{self.path}: not a Touchstone ledger (table {table} has columns {have})")
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
            self.db.close()
            raise UserError(f"{self.path}: corrupt or not a Touchstone ledger ({e})") from None
        except UserError:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------------------- writes
    def transaction(self):
        """`with ledger.transaction():` groups writes into one all-or-nothing commit."""
        return _Transaction(self.db)

    def start_generation(self, gen: int, champion: str) -> None:
        """Record the champion at the start of `gen` once; a resumed generation keeps the first one."""
        self.db.execute(
            "INSERT OR IGNORE INTO generations (gen, started, champion_before) VALUES (?, ?, ?)",
            (gen, time.time(), champion),
        )

    def finish_step(self, gen: int, step: str, seconds: float, summary: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?)",
            (gen, step, seconds, time.time(), json.dumps(summary, sort_keys=True)),
        )

    def add_candidates(self, gen: int, rows: list[dict]) -> None:
        self.db.execute("DELETE FROM candidates WHERE gen = ?", (gen,))
        self.db.executemany(
            "INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    gen,
                    r["world"],
                    r["source"],
                    r["made"],
                    r["verified"],
                    r["rejected"],
                    json.dumps(r["reasons"], sort_keys=True),
                )
                for r in rows
            ],
        )

    def add_records(self, gen: int, records: list[dict]) -> None:
        self.db.execute("DELETE FROM records WHERE gen = ?", (gen,))
        self.db.executemany(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r["id"],
                    gen,
                    r["world"],
                    "pair" if "a" in r else "claim",
                    str(r["label"]),
                    (r.get("verdict") or {}).get("reason"),
                    r.get("source"),
                )
                for r in records
            ],
        )

    def set_counts(self, gen: int, counts: dict[str, int]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO data_counts VALUES (?, ?, ?)", [(gen, d, n) for d, n in counts.items()]
        )

    def set_metrics(self, gen: int, model: str, metrics: dict[str, dict]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)",
            [(gen, model, task, m["accuracy"], m["n"]) for task, m in metrics.items()],
        )

    def decide(self, gen: int, challenger: str, decision: str, reason: str, p_value: float | None, stats: dict) -> None:
        self.db.execute(
            "UPDATE generations SET finished = ?, challenger = ?, decision = ?, reason = ?, p_value = ?, "
            "stats = ? WHERE gen = ?",
            (time.time(), challenger, decision, reason, p_value, json.dumps(stats, sort_keys=True), gen),
        )

    # -------------------------------------------------------------------------------------- reads
    def done_steps(self, gen: int) -> dict[str, dict]:
        rows = self.db.execute("SELECT step, summary FROM steps WHERE gen = ?", (gen,)).fetchall()
        return {step: json.loads(summary) for step, summary in rows}

    def generation(self, gen: int) -> dict | None:
        row = self.db.execute("SELECT * FROM generations WHERE gen = ?", (gen,)).fetchone()
        if row is None:
            return None
        cols = [d[0] for d in self.db.execute("SELECT * FROM generations LIMIT 0").description]
        return dict(zip(cols, row))

    def generations(self) -> list[dict]:
        cur = self.db.execute("SELECT * FROM generations ORDER BY gen")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def step_times(self) -> list[tuple[int, str, float]]:
        return self.db.execute("SELECT gen, step, seconds FROM steps ORDER BY gen, finished").fetchall()

    def metrics(self) -> list[tuple[int, str, str, float, int]]:
        return self.db.execute("SELECT gen, model, task, accuracy, n FROM metrics ORDER BY gen, model, task").fetchall()

    def record_ids(self, gen: int | None = None) -> list[str]:
        """The ids of the verified records (of generation `gen`, or of all)."""
        if gen is None:
            return [r[0] for r in self.db.execute("SELECT id FROM records")]
        return [r[0] for r in self.db.execute("SELECT id FROM records WHERE gen = ?", (gen,))]


def generation_stats(row: dict | None) -> dict:
    """The decoded `stats` column of a generations row ({} for none, or for a generation not yet decided)."""
    return json.loads(row["stats"] or "{}") if row else {}


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
