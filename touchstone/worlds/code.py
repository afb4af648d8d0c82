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
than a slow machine (the limit is `timeout`, 2 s by default).
"""

from __future__ import annotations

import ast
import random
import re

from touchstone.records import claim_record, pair_record
from touchstone.synth import in_split
from touchstone.worlds.base import Verdict, World

# name, reference source, argument generator. Sources are written for clarity, and every one has
# operators, constants and branches for the mutations to break.
TEMPLATES = {
    "sum_of_squares": ("def sum_of_squares(n):\n    total = 0\n    for i in range(1, n + 1):\n"
                       "        total += i * i\n    return total\n",
                       lambda r: (r.randint(0, 30),)),
    "count_vowels": ("def count_vowels(text):\n    count = 0\n    for ch in text.lower():\n"
                     "        if ch in 'aeiou':\n            count += 1\n    return count\n",
                     lambda r: (_word(r, r.randint(0, 12)),)),
    "reverse_words": ("def reverse_words(sentence):\n    words = sentence.split()\n"
                      "    return ' '.join(reversed(words))\n",
                      lambda r: (" ".join(_word(r, r.randint(1, 6)) for _ in range(r.randint(1, 5))),)),
    "largest": ("def largest(values):\n    best = values[0]\n    for v in values[1:]:\n        if v > best:\n"
                "            best = v\n    return best\n",
                lambda r: ([r.randint(-50, 50) for _ in range(r.randint(1, 8))],)),
    "running_sum": ("def running_sum(values):\n    out = []\n    total = 0\n    for v in values:\n"
                    "        total = total + v\n        out.append(total)\n    return out\n",
                    lambda r: ([r.randint(-9, 9) for _ in range(r.randint(0, 7))],)),
    "is_palindrome": ("def is_palindrome(text):\n    cleaned = [c.lower() for c in text if c.isalnum()]\n"
                      "    return cleaned == cleaned[::-1]\n",
                      lambda r: (_palindromish(r),)),
    "fizzbuzz": ("def fizzbuzz(n):\n    if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n"
                 "        return 'Fizz'\n    if n % 5 == 0:\n        return 'Buzz'\n    return str(n)\n",
                 lambda r: (r.randint(1, 100),)),
    "word_counts": ("def word_counts(text):\n    counts = {}\n    for word in text.split():\n"
                    "        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
                    lambda r: (" ".join(r.choice(["a", "b", "to", "be", "or", "not"]) for _ in range(r.randint(0, 8))),)),
    "factorial": ("def factorial(n):\n    result = 1\n    while n > 1:\n        result *= n\n        n -= 1\n"
                  "    return result\n",
                  lambda r: (r.randint(0, 12),)),
    "fibonacci": ("def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
                  "    return a\n",
                  lambda r: (r.randint(0, 25),)),
    "gcd": ("def gcd(a, b):\n    while b != 0:\n        a, b = b, a % b\n    return a\n",
            lambda r: (r.randint(1, 200), r.randint(1, 200))),
    "evens": ("def evens(values):\n    return [v for v in values if v % 2 == 0]\n",
              lambda r: ([r.randint(0, 40) for _ in range(r.randint(0, 8))],)),
    "digit_sum": ("def digit_sum(n):\n    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n"
                  "    return total\n",
                  lambda r: (r.randint(0, 99999),)),
    "clamp": ("def clamp(x, low, high):\n    if x < low:\n        return low\n    if x > high:\n        return high\n"
              "    return x\n",
              lambda r: (r.randint(-20, 20), r.randint(-10, 0), r.randint(1, 10))),
    "merge_counts": ("def merge_counts(first, second):\n    merged = dict(first)\n    for key, value in second.items():\n"
                     "        merged[key] = merged.get(key, 0) + value\n    return merged\n",
                     lambda r: ({k: r.randint(1, 5) for k in r.sample("abcde", r.randint(0, 3))},
                                {k: r.randint(1, 5) for k in r.sample("abcde", r.randint(0, 3))})),
    "second_largest": ("def second_largest(values):\n    unique = sorted(set(values))\n    if len(unique) < 2:\n"
                       "        return None\n    return unique[-2]\n",
                       lambda r: ([r.randint(0, 9) for _ in range(r.randint(1, 6))],)),
    "title_case": ("def title_case(text):\n    words = []\n    for word in text.split(' '):\n"
                   "        words.append(word[:1].upper() + word[1:])\n    return ' '.join(words)\n",
                   lambda r: (" ".join(_word(r, r.randint(1, 6)) for _ in range(r.randint(1, 4))),)),
    "count_in_range": ("def count_in_range(values, low, high):\n    count = 0\n    for v in values:\n"
                       "        if low <= v and v < high:\n            count += 1\n    return count\n",
                       lambda r: ([r.randint(0, 20) for _ in range(r.randint(0, 8))], r.randint(0, 8), r.randint(8, 16))),
}
N_TESTS = 5
MUTATIONS = ("flip_operator", "off_by_one", "wrong_return", "delete_line", "undefined_name", "syntax_error",
             "infinite_loop")
# Infinite loops cost a whole timeout to verify, so they are drawn less often.
MUTATION_WEIGHTS = (4, 4, 2, 2, 2, 2, 1)


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _palindromish(rng: random.Random) -> str:
    half = _word(rng, rng.randint(0, 4))
    return half + rng.choice(["", "x"]) + half[::-1] if rng.random() < 0.5 else _word(rng, rng.randint(1, 6))


def program_of(item: dict) -> str:
    return item.get("prompt", "") + item.get("completion", item.get("canonical_solution", ""))


# -------------------------------------------------------------------------------------------- mutation
_FLIPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mod, ast.Mod: ast.FloorDiv,
          ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
          ast.NotEq: ast.Eq, ast.And: ast.Or, ast.Or: ast.And, ast.In: ast.NotIn, ast.NotIn: ast.In}


def mutate_source(source: str, kind: str, rng: random.Random) -> str | None:
    """`source` broken by one mutation of `kind`, or None when the source has nothing to break that way
    (source that does not parse, such as a model's unfinished function, has nothing left to break)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef)), None)
    if func is None:
        return None
    if kind == "syntax_error":
        lines = ast.unparse(tree).splitlines()
        spots = [i for i, line in enumerate(lines) if line.rstrip().endswith(":")]
        i = rng.choice(spots)
        lines[i] = lines[i].rstrip()[:-1]
        return "\n".join(lines) + "\n"
    nodes = list(ast.walk(func))
    if kind == "flip_operator":
        spots = [(n, "op") for n in nodes if isinstance(n, (ast.BinOp, ast.AugAssign, ast.BoolOp))
                 and type(n.op) in _FLIPS]
        spots += [(n, i) for n in nodes if isinstance(n, ast.Compare) for i, op in enumerate(n.ops)
                  if type(op) in _FLIPS]
        if not spots:
            return None
        node, where = rng.choice(spots)
        if where == "op":
            node.op = _FLIPS[type(node.op)]()
        else:
            node.ops[where] = _FLIPS[type(node.ops[where])]()
    elif kind == "off_by_one":
        spots = [n for n in nodes if isinstance(n, ast.Constant) and type(n.value) is int]
        if not spots:
            return None
        node = rng.choice(spots)
        node.value += rng.choice([-1, 1])
    elif kind == "wrong_return":
        spots = [n for n in nodes if isinstance(n, ast.Return) and n.value is not None]
        if not spots:
            return None
        node = rng.choice(spots)
        args = [a.arg for a in func.args.args]
        node.value = rng.choice([ast.Constant(None), ast.Constant(0), ast.Name(args[0], ast.Load())])
    elif kind == "delete_line":
        bodies = [n.body for n in nodes if hasattr(n, "body") and isinstance(n.body, list) and len(n.body) > 1]
        if not bodies:
            return None
        body = rng.choice(bodies)
        del body[rng.randrange(len(body))]
    elif kind == "undefined_name":
        spots = [n for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        if not spots:
            return None
        node = rng.choice(spots)
        node.id = node.id + "s" if not node.id.endswith("s") else node.id[:-1]
    elif kind == "infinite_loop":
        loop = ast.parse("while True:\n    pass").body[0]
        returns = [i for i, s in enumerate(func.body) if isinstance(s, ast.Return)]
        func.body.insert(returns[-1] if returns else len(func.body), loop)
    else:
        raise ValueError(f"unknown mutation {kind!r} (choose from {', '.join(MUTATIONS)})")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


# -------------------------------------------------------------------------------------------- records
PAIR_PROMPT = "Which version of `{name}` passes these tests?\n\n{test}"
PAIR_PROMPT_RE = re.compile(r"Which version of `(?P<name>\w+)` passes these tests\?\n\n(?P<test>.*)", re.S)
CLAIM = "This function passes its tests:\n\n{code}\n# tests (candidate = {name})\n{test}"
CLAIM_SPLIT_RE = re.compile(r"\n# tests \(candidate = (?P<name>\w+)\)\n")
CLAIM_HEAD = "This function passes its tests:\n\n"


def _verdict(result) -> Verdict:
    ok = result.status == "pass"
    evidence = {"message": result.message} if result.message else {}
    if result.stdout:
        evidence["stdout"] = result.stdout[-1000:]
    reason = result.status if result.status in ("pass", "syntax_error", "runtime_error", "timeout",
                                                "wrong_answer") else "error"
    return Verdict(ok, float(ok), reason, evidence)


class CodeWorld(World):
    name = "code"
    version = 1

    def __init__(self, timeout: float = 2.0, sandbox=None):
        self.timeout = timeout
        self._sandbox = sandbox

    @property
    def sandbox(self):
        if self._sandbox is None:
            from touchstone.sandbox import shared_sandbox

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
        jobs = [{"program": src, "entry_point": name, "timeout": self.timeout,
                 "test": f"def check(candidate):\n    return [candidate(*args) for args in {calls!r}]\n"}
                for name, src, calls in drafts]
        items = []
        for (name, src, calls), result in zip(drafts, self.sandbox.check_many(jobs)):
            if result.status != "pass":
                raise RuntimeError(f"template {name} failed in the sandbox: {result.status} {result.message}")
            lines = [f"    assert candidate({', '.join(map(repr, args))}) == {out!r}"
                     for args, out in zip(calls, result.value)]
            items.append({"prompt": "", "completion": src, "entry_point": name,
                          "test": "def check(candidate):\n" + "\n".join(lines) + "\n"})
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
                f"    assert candidate({', '.join(map(repr, gen(rng)))})\n" for _ in range(N_TESTS))
            mutant = mutate_source(source, rng.choice(MUTATIONS), rng) or source
            out += [PAIR_PROMPT.format(name=name, test=test), source, mutant,
                    CLAIM.format(code=mutant.rstrip("\n"), name=name, test=test)]
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
        return {"program": program_of(item), "test": item["test"], "entry_point": item["entry_point"],
                "prompt": item.get("prompt", ""), "timeout": self.timeout}

    def verify(self, item: dict) -> Verdict:
        return self.verify_many([item])[0]

    def verify_many(self, objs: list[dict]) -> list[Verdict]:
        """Items or records, checked over the sandbox's workers in parallel."""
        jobs, where = [], []
        for obj in objs:
            start = len(jobs)
            if "a" in obj or "statement" in obj:
                jobs += [self._job(item) for item in self.items_of_record(obj)]
            else:
                jobs.append(self._job(obj))
            where.append((start, len(jobs)))
        verdicts = [_verdict(r) for r in self.sandbox.check_many(jobs)]
        out = []
        for obj, (i, j) in zip(objs, where):
            out.append(self._record_verdict(obj, *verdicts[i:j]) if ("a" in obj or "statement" in obj)
                       else verdicts[i])
        return out

    def verify_record(self, record: dict) -> Verdict:
        """Does the record's label agree with running its code? Reads the record's own text."""
        return self.verify_many([record])[0]

    @staticmethod
    def items_of_record(record: dict) -> list[dict]:
        """The item(s) a pair or claim record shows: a ValueError when its text is not ours."""
        if "statement" in record:
            text = record["statement"]
            matches = list(CLAIM_SPLIT_RE.finditer(text))
            if not text.startswith(CLAIM_HEAD) or not matches:
                raise ValueError("not a code claim (expected 'This function passes its tests:')")
            m = matches[-1]
            return [{"prompt": "", "completion": text[len(CLAIM_HEAD):m.start()] + "\n",
                     "entry_point": m["name"], "test": text[m.end():]}]
        m = PAIR_PROMPT_RE.fullmatch(record.get("prompt", ""))
        if not m:
            raise ValueError("not a code pair (expected 'Which version of `NAME` passes these tests?')")
        return [{"prompt": "", "completion": record[side], "entry_point": m["name"], "test": m["test"]}
                for side in ("a", "b")]

    @staticmethod
    def _record_verdict(record: dict, *verdicts: Verdict) -> Verdict:
        if "statement" in record:
            (v,) = verdicts
            agree = v.ok == bool(record["label"])
            return Verdict(agree, float(agree), "agrees" if agree else "label_disagrees",
                           {"reason": v.reason, **v.evidence})
        va, vb = verdicts
        evidence = {"a": va.to_dict(), "b": vb.to_dict()}
        if va.ok == vb.ok:
            return Verdict(False, 0.0, "ambiguous", evidence)
        agree = record["label"] == ("a" if va.ok else "b")
        return Verdict(agree, float(agree), "agrees" if agree else "label_disagrees", evidence)

    # ------------------------------------------------------------------------------------- render
    def render(self, rng: random.Random, n: int) -> list[dict]:
        """n records, half pairs (working vs broken, the working side at random) and half claims."""
        out: list[dict] = []
        while len(out) < n:
            items = [it for it in self.sample_many(rng, min(16, 2 * (n - len(out)))) if in_split(self, it)]
            mutants = [self.mutate(it, rng) for it in items]
            for item, mutant, v in zip(items, mutants, self.verify_many(mutants)):
                if v.ok or len(out) >= n:
                    continue  # a harmless mutation: no contrast to learn from
                good = Verdict(True, 1.0, "pass", {})
                kind = f"{item['entry_point']}:{mutant['mutation']}"
                if rng.random() < 0.5:
                    label = rng.choice("ab")
                    a, b = (item, mutant) if label == "a" else (mutant, item)
                    rec = pair_record(PAIR_PROMPT.format(name=item["entry_point"], test=item["test"]),
                                      a["completion"], b["completion"], label, world=self.name, kind=kind,
                                      source="code")
                    verdicts = (good, v) if label == "a" else (v, good)
                else:
                    shown, sv = (item, good) if rng.random() < 0.5 else (mutant, v)
                    statement = CLAIM.format(code=shown["completion"].rstrip("\n"), name=item["entry_point"],
                                             test=item["test"])
                    rec = claim_record(statement, sv.ok, world=self.name, kind=kind, source="code")
                    verdicts = (sv,)
                rec["verdict"] = self._record_verdict(rec, *verdicts).to_dict()
                out.append(rec)
        return out


def humaneval_item(problem: dict, completion: str | None = None) -> dict:
    """A HumanEval problem as a code item, with its canonical solution unless a completion is given."""
    return {"prompt": problem["prompt"], "completion": problem["canonical_solution"] if completion is None
            else completion, "test": problem["test"], "entry_point": problem["entry_point"]}
