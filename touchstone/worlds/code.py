"""Code: small Python functions, their tests, and broken versions of them.

An item has HumanEval's shape, so HumanEval problems verify as they are:
    {"prompt": "", "completion": "def add(a, b):\\n    return a + b\\n",
     "test": "def check(candidate):\\n    assert candidate(1, 2) == 3\\n", "entry_point": "add"}
The program is `prompt + completion` (or `prompt + canonical_solution`); `prompt` is also given to the
test, which may use its helper functions. Verification runs the program and the test in the sandbox
(touchstone.sandbox: the test runs in its own process and only receives plain values), and the reason
is one of pass, syntax_error, runtime_error, timeout, wrong_answer, with the error text as evidence.

Items are made from templates (arithmetic, strings, lists, dicts, loops): the reference function is run
in the sandbox on random inputs, and its outputs become the test's expected values. `mutate` breaks a
function with an AST edit (flipped operator, off-by-one constant, wrong return, deleted line, undefined
name, infinite loop) or a text edit (a missing colon: syntax error); a mutant is only used when the
verifier says it fails, and the record keeps the verifier's reason. Both versions are printed by
`ast.unparse`, so they differ only where the mutation is.

Guaranteed: every rendered record's label is the verifier's verdict (`verify_record` re-runs both
versions from the record's own text). Not guaranteed: that a timeout reflects an infinite loop rather
than a slow machine (the limit is `timeout`, `TIMEOUT` by default).
"""

from __future__ import annotations

import ast
import random
import re

from touchstone.records import claim_record, is_judged, is_pair, pair_record
from touchstone.sandbox import shared_sandbox
from touchstone.worlds.base import (
    LATER,
    Grower,
    Verdict,
    World,
    agreement,
    ordered,
    pair_agreement,
    verified_evidence,
)
from touchstone.worlds.programs import (
    MUTATION_WEIGHTS,
    MUTATIONS,
    N_TESTS,
    TEMPLATES,
    function_body,
    mutate_source,
)

PAIR_PROMPT = "Which version of `{name}` passes these tests?\n\n{test}"
PAIR_PROMPT_RE = re.compile(r"Which version of `(?P<name>\w+)` passes these tests\?\n\n(?P<test>.*)", re.S)
CLAIM = "This function passes its tests:\n\n{code}\n# tests (candidate = {name})\n{test}"
CLAIM_SPLIT_RE = re.compile(r"\n# tests \(candidate = (?P<name>\w+)\)\n")
CLAIM_HEAD = "This function passes its tests:\n\n"


def program_of(item: dict) -> str:
    return item.get("prompt", "") + item.get("completion", item.get("canonical_solution", ""))


def _verdict(result) -> Verdict:
    ok = result.status == "pass"
    evidence = {"message": result.message} if result.message else {}
    if result.stdout:
        evidence["stdout"] = result.stdout[-1000:]
    reason = (
        result.status
        if result.status in ("pass", "syntax_error", "runtime_error", "timeout", "wrong_answer")
        else "error"
    )
    return Verdict(ok, float(ok), reason, evidence)


# Wall-clock limit of one verification. A mutant that loops forever ("infinite_loop", about 3% of
# mutants) holds a sandbox worker for the whole limit at every verification: at 2 s those timeouts were
# 85% of the code world's sandbox time. Every function this world sees finishes far sooner, measured
# with both cores busy: the templates' tests at most 63 ms, HumanEval's 164 reference solutions at most
# 189 ms (HumanEval/75), so 0.5 s leaves a margin of 2.6x over the slowest.
TIMEOUT = 0.5
# Items per sandbox batch when rendering: a batch waits for its slowest job (a mutant's timeout), and
# the other workers fill that wait only with the batch's other jobs. 64 rendered 28% faster than 16.
RENDER_BATCH = 64


class CodeWorld(World):
    name = "code"
    version = 1

    def __init__(self, timeout: float = TIMEOUT, sandbox=None):
        self.timeout = timeout
        self._sandbox = sandbox

    @property
    def sandbox(self):
        if self._sandbox is None:
            self._sandbox = shared_sandbox()
        return self._sandbox

    # ------------------------------------------------------------------------------ sample / mutate
    def sample(self, rng: random.Random) -> dict:
        return self.sample_many(rng, 1)[0]

    def sample_many(self, rng: random.Random, n: int) -> list[dict]:
        """n template items whose expected values come from running the reference in the sandbox."""
        drafts = []
        for _ in range(n):
            name = rng.choice(sorted(TEMPLATES))
            source, gen = TEMPLATES[name]
            calls = []
            while len(calls) < N_TESTS:
                args = gen(rng)
                if args not in calls:
                    calls.append(args)
            drafts.append((name, ast.unparse(ast.parse(source)) + "\n", calls))
        jobs = [
            {
                "program": src,
                "entry_point": name,
                "timeout": self.timeout,
                "test": f"def check(candidate):\n    return [candidate(*args) for args in {calls!r}]\n",
            }
            for name, src, calls in drafts
        ]
        items = []
        for (name, src, calls), result in zip(drafts, self.sandbox.check_many(jobs)):
            if result.status != "pass":
                raise RuntimeError(f"template {name} failed in the sandbox: {result.status} {result.message}")
            lines = [
                f"    assert candidate({', '.join(map(repr, args))}) == {out!r}"
                for args, out in zip(calls, result.value)
            ]
            items.append(
                {
                    "prompt": "",
                    "completion": src,
                    "entry_point": name,
                    "test": "def check(candidate):\n" + "\n".join(lines) + "\n",
                }
            )
        return items

    def texts(self, rng: random.Random, n: int) -> list[str]:
        """`render`'s questions and functions for n template items, without the sandbox: the tests' calls
        are written without their expected values, which only running the reference gives."""
        out = []
        for _ in range(n):
            name = rng.choice(sorted(TEMPLATES))
            source, gen = TEMPLATES[name]
            source = ast.unparse(ast.parse(source)) + "\n"
            test = "def check(candidate):\n" + "".join(
                f"    assert candidate({', '.join(map(repr, gen(rng)))})\n" for _ in range(N_TESTS)
            )
            mutant = mutate_source(source, rng.choice(MUTATIONS), rng) or source
            out += [
                PAIR_PROMPT.format(name=name, test=test),
                source,
                mutant,
                CLAIM.format(code=mutant.rstrip("\n"), name=name, test=test),
            ]
        return out

    def mutate(self, item: dict, rng: random.Random, kind: str | None = None) -> dict:
        """The item with its completion broken by one mutation (random kind unless given); the
        mutation may happen to be harmless, so check it with `verify`."""
        for _ in range(20):
            k = kind or rng.choices(MUTATIONS, MUTATION_WEIGHTS)[0]
            broken = mutate_source(item["completion"], k, rng)
            if broken is not None and broken != item["completion"]:
                return {**item, "completion": broken, "mutation": k}
        raise ValueError(f"no mutation applies to {item['entry_point']}")

    def contrast(self, record: dict, rng: random.Random, k: int) -> list[dict]:
        """The claim's function against k mutants of it, asked as this world's pair question. `mutate` is
        an AST edit that never runs the code, so this is blind to the claim's truth: a working function
        should beat its (almost always broken) mutants, a broken one meets broken mutants as equals."""
        try:
            item = self.items_of_record(record)[0]
        except (ValueError, KeyError):
            return []
        prompt = PAIR_PROMPT.format(name=item["entry_point"], test=item["test"])
        out = []
        for _ in range(k):
            try:
                mutant = self.mutate(item, rng)
            except ValueError:  # nothing in the function to mutate
                break
            out.append({"prompt": prompt, "a": item["completion"], "b": mutant["completion"]})
        return out

    # ------------------------------------------------------------------------------------- verify
    def _job(self, item: dict) -> dict:
        for key in ("test", "entry_point"):
            if key not in item:
                raise KeyError(key)
        return {
            "program": program_of(item),
            "test": item["test"],
            "entry_point": item["entry_point"],
            "prompt": item.get("prompt", ""),
            "timeout": self.timeout,
        }

    def verify(self, item: dict) -> Verdict:
        return self.verify_many([item])[0]

    def verify_many(self, objs: list[dict]) -> list[Verdict]:
        """Items or records, checked over the sandbox's workers in parallel."""
        jobs, where = [], []
        for obj in objs:
            start = len(jobs)
            if is_judged(obj):
                jobs += [self._job(item) for item in self.items_of_record(obj)]
            else:
                jobs.append(self._job(obj))
            where.append((start, len(jobs)))
        verdicts = [_verdict(r) for r in self.sandbox.check_many(jobs)]
        out = []
        for obj, (i, j) in zip(objs, where):
            out.append(self._record_verdict(obj, *verdicts[i:j]) if is_judged(obj) else verdicts[i])
        return out

    def verify_record(self, record: dict) -> Verdict:
        """Does the record's label agree with running its code? Reads the record's own text."""
        return self.verify_many([record])[0]

    @staticmethod
    def items_of_record(record: dict) -> list[dict]:
        """The item(s) a pair or claim record shows: a ValueError when its text is not ours."""
        if not is_pair(record):
            text = record["statement"]
            matches = list(CLAIM_SPLIT_RE.finditer(text))
            if not text.startswith(CLAIM_HEAD) or not matches:
                raise ValueError("not a code claim (expected 'This function passes its tests:')")
            m = matches[-1]
            return [
                {
                    "prompt": "",
                    "completion": text[len(CLAIM_HEAD) : m.start()] + "\n",
                    "entry_point": m["name"],
                    "test": text[m.end() :],
                }
            ]
        m = PAIR_PROMPT_RE.fullmatch(record.get("prompt", ""))
        if not m:
            raise ValueError("not a code pair (expected 'Which version of `NAME` passes these tests?')")
        return [
            {"prompt": "", "completion": record[side], "entry_point": m["name"], "test": m["test"]}
            for side in ("a", "b")
        ]

    def derivation(self, record: dict) -> str | None:
        """What the sandbox reported for each version (passes, or the error's last line), from the
        verdict the record was verified with; None for an unverified record (code is never run here)."""
        evidence = verified_evidence(record)
        if evidence is None:
            return None
        if is_pair(record):
            return f" The first {outcome(evidence.get('a'))}. The second {outcome(evidence.get('b'))}."
        return f" It {outcome(evidence)}."

    @staticmethod
    def _record_verdict(record: dict, *verdicts: Verdict) -> Verdict:
        if not is_pair(record):
            (v,) = verdicts
            return agreement(v.ok == bool(record["label"]), {"reason": v.reason, **v.evidence})
        va, vb = verdicts
        return pair_agreement(record, va, vb, {"a": va.to_dict(), "b": vb.to_dict()})

    # ------------------------------------------------------------------------------------- render
    def render(self, rng: random.Random, n: int) -> list[dict]:
        """n records, half pairs (working vs broken, the working side at random) and half claims. Items
        come `RENDER_BATCH` at a time and their mutants run in one sandbox batch, so this is
        `World.render` over batches."""
        out: list[dict] = []
        while len(out) < n:
            items = [it for it in self.sample_many(rng, min(RENDER_BATCH, 2 * (n - len(out)))) if self.in_split(it)]
            mutants = [self.mutate(it, rng) for it in items]
            for item, mutant, v in zip(items, mutants, self.verify_many(mutants)):
                if v.ok or len(out) >= n:
                    continue  # a harmless mutation: no contrast to learn from
                good = Verdict(True, 1.0, "pass", {})
                kind = f"{item['entry_point']}:{mutant['mutation']}"
                if rng.random() < 0.5:
                    label = rng.choice("ab")
                    a, b = ordered(label, item, mutant)
                    rec = pair_record(
                        PAIR_PROMPT.format(name=item["entry_point"], test=item["test"]),
                        a["completion"],
                        b["completion"],
                        label,
                        world=self.name,
                        kind=kind,
                        source="code",
                    )
                    verdicts = ordered(label, good, v)
                else:
                    shown, sv = (item, good) if rng.random() < 0.5 else (mutant, v)
                    statement = CLAIM.format(
                        code=shown["completion"].rstrip("\n"), name=item["entry_point"], test=item["test"]
                    )
                    rec = claim_record(statement, sv.ok, world=self.name, kind=kind, source="code")
                    verdicts = (sv,)
                rec["verdict"] = self._record_verdict(rec, *verdicts).to_dict()
                out.append(rec)
        return out

    # ------------------------------------------------------------------------------------ growing
    champion_tokens = 64

    def champion_prompts(self, rng: random.Random, n: int) -> tuple[list[str], list[dict]]:
        """The signature of each of n template functions of the training split: the champion writes the body."""
        items = [it for it in self.sample_many(rng, n) if self.in_split(it)]
        return [it["completion"].split("\n")[0] + "\n" for it in items], items

    def champion_records(
        self, items: list[dict], prompts: list[str], completions: list[str], rng: random.Random, source: str
    ) -> tuple[list[dict], int]:
        """The sandbox runs each function the champion wrote against the template's tests: a claim ("this
        function passes its tests", labelled by the sandbox), and when it fails, a pair of the reference
        against the champion's version."""
        written = [
            {**it, "completion": function_body(p.rstrip("\n"), c)} for it, p, c in zip(items, prompts, completions)
        ]
        out = []
        for item, mine, verdict in zip(items, written, self.verify_many(written)):
            name, test = item["entry_point"], item["test"]
            kind = f"{name}:champion"
            out.append(
                claim_record(
                    CLAIM.format(code=mine["completion"].rstrip("\n"), name=name, test=test),
                    verdict.ok,
                    world=self.name,
                    kind=kind,
                    source=source,
                )
            )
            if not verdict.ok:
                label = rng.choice("ab")
                a, b = ordered(label, item["completion"], mine["completion"])
                out.append(
                    pair_record(
                        PAIR_PROMPT.format(name=name, test=test), a, b, label, world=self.name, kind=kind, source=source
                    )
                )
        return out, 0

    def grower(self, rng: random.Random, generation: int) -> Grower:
        return _ClaimMutations(self, rng, generation)


class _ClaimMutations(Grower):
    """A code claim's function broken by `mutate`; the mutants run in one sandbox batch at the end."""

    def __init__(self, world: CodeWorld, rng: random.Random, generation: int):
        self.world, self.rng, self.generation = world, rng, generation
        self.pending: list[tuple[dict, dict, str]] = []  # (item, mutant, parent id)

    def takes(self, record: dict) -> bool:
        return not is_pair(record)

    def grow(self, record: dict):
        (item,) = self.world.items_of_record(record)
        self.pending.append((item, self.world.mutate(item, self.rng), record["id"]))
        return LATER

    def finish(self) -> list[dict]:
        if not self.pending:
            return []
        out = []
        verdicts = self.world.verify_many([mutant for _, mutant, _ in self.pending])
        for (item, new, parent), v in zip(self.pending, verdicts):
            text = CLAIM.format(code=new["completion"].rstrip("\n"), name=item["entry_point"], test=item["test"])
            out.append(
                claim_record(
                    text,
                    v.ok,
                    world=self.world.name,
                    kind=f"{item['entry_point']}:{new['mutation']}",
                    source="mutation",
                    parent=parent,
                    generation=self.generation,
                )
            )
        return out


def outcome(evidence: dict | None) -> str:
    """One version's verdict in words: "passes its tests", or "fails: " and the error's last line."""
    evidence = evidence or {}
    # A pair's side is a whole verdict (its message under "evidence"); a claim's evidence is flat.
    message = evidence.get("message") or (evidence.get("evidence") or {}).get("message") or ""
    if evidence.get("reason") == "pass":
        return "passes its tests"
    last = message.strip().splitlines()[-1] if message.strip() else evidence.get("reason", "an error")
    return f"fails: {last[:200]}"
