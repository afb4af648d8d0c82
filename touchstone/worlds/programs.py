"""The code world's items and their breakage: template functions with argument generators, the AST
edits that break a function (`mutate_source`), and HumanEval problems as items (`humaneval_item`). See
`touchstone.worlds.code` for how they become records.
"""

from __future__ import annotations

import ast
import random

# name, reference source, argument generator. Sources are written for clarity, and every one has
# operators, constants and branches for the mutations to break.
TEMPLATES = {
    "sum_of_squares": (
        "def sum_of_squares(n):\n    total = 0\n    for i in range(1, n + 1):\n"
        "        total += i * i\n    return total\n",
        lambda r: (r.randint(0, 30),),
    ),
    "count_vowels": (
        "def count_vowels(text):\n    count = 0\n    for ch in text.lower():\n"
        "        if ch in 'aeiou':\n            count += 1\n    return count\n",
        lambda r: (_word(r, r.randint(0, 12)),),
    ),
    "reverse_words": (
        "def reverse_words(sentence):\n    words = sentence.split()\n    return ' '.join(reversed(words))\n",
        lambda r: (" ".join(_word(r, r.randint(1, 6)) for _ in range(r.randint(1, 5))),),
    ),
    "largest": (
        "def largest(values):\n    best = values[0]\n    for v in values[1:]:\n        if v > best:\n"
        "            best = v\n    return best\n",
        lambda r: ([r.randint(-50, 50) for _ in range(r.randint(1, 8))],),
    ),
    "running_sum": (
        "def running_sum(values):\n    out = []\n    total = 0\n    for v in values:\n"
        "        total = total + v\n        out.append(total)\n    return out\n",
        lambda r: ([r.randint(-9, 9) for _ in range(r.randint(0, 7))],),
    ),
    "is_palindrome": (
        "def is_palindrome(text):\n    cleaned = [c.lower() for c in text if c.isalnum()]\n"
        "    return cleaned == cleaned[::-1]\n",
        lambda r: (_palindromish(r),),
    ),
    "fizzbuzz": (
        "def fizzbuzz(n):\n    if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n"
        "        return 'Fizz'\n    if n % 5 == 0:\n        return 'Buzz'\n    return str(n)\n",
        lambda r: (r.randint(1, 100),),
    ),
    "word_counts": (
        "def word_counts(text):\n    counts = {}\n    for word in text.split():\n"
        "        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
        lambda r: (" ".join(r.choice(["a", "b", "to", "be", "or", "not"]) for _ in range(r.randint(0, 8))),),
    ),
    "factorial": (
        "def factorial(n):\n    result = 1\n    while n > 1:\n        result *= n\n        n -= 1\n    return result\n",
        lambda r: (r.randint(0, 12),),
    ),
    "fibonacci": (
        "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        lambda r: (r.randint(0, 25),),
    ),
    "gcd": (
        "def gcd(a, b):\n    while b != 0:\n        a, b = b, a % b\n    return a\n",
        lambda r: (r.randint(1, 200), r.randint(1, 200)),
    ),
    "evens": (
        "def evens(values):\n    return [v for v in values if v % 2 == 0]\n",
        lambda r: ([r.randint(0, 40) for _ in range(r.randint(0, 8))],),
    ),
    "digit_sum": (
        "def digit_sum(n):\n    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n"
        "    return total\n",
        lambda r: (r.randint(0, 99999),),
    ),
    "clamp": (
        "def clamp(x, low, high):\n    if x < low:\n        return low\n    if x > high:\n        return high\n"
        "    return x\n",
        lambda r: (r.randint(-20, 20), r.randint(-10, 0), r.randint(1, 10)),
    ),
    "merge_counts": (
        "def merge_counts(first, second):\n    merged = dict(first)\n    for key, value in second.items():\n"
        "        merged[key] = merged.get(key, 0) + value\n    return merged\n",
        lambda r: (
            {k: r.randint(1, 5) for k in r.sample("abcde", r.randint(0, 3))},
            {k: r.randint(1, 5) for k in r.sample("abcde", r.randint(0, 3))},
        ),
    ),
    "second_largest": (
        "def second_largest(values):\n    unique = sorted(set(values))\n    if len(unique) < 2:\n"
        "        return None\n    return unique[-2]\n",
        lambda r: ([r.randint(0, 9) for _ in range(r.randint(1, 6))],),
    ),
    "title_case": (
        "def title_case(text):\n    words = []\n    for word in text.split(' '):\n"
        "        words.append(word[:1].upper() + word[1:])\n    return ' '.join(words)\n",
        lambda r: (" ".join(_word(r, r.randint(1, 6)) for _ in range(r.randint(1, 4))),),
    ),
    "count_in_range": (
        "def count_in_range(values, low, high):\n    count = 0\n    for v in values:\n"
        "        if low <= v and v < high:\n            count += 1\n    return count\n",
        lambda r: ([r.randint(0, 20) for _ in range(r.randint(0, 8))], r.randint(0, 8), r.randint(8, 16)),
    ),
}
N_TESTS = 5
MUTATIONS = (
    "flip_operator",
    "off_by_one",
    "wrong_return",
    "delete_line",
    "undefined_name",
    "syntax_error",
    "infinite_loop",
)
# Infinite loops cost a whole timeout to verify, so they are drawn less often.
MUTATION_WEIGHTS = (4, 4, 2, 2, 2, 2, 1)


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _palindromish(rng: random.Random) -> str:
    half = _word(rng, rng.randint(0, 4))
    return half + rng.choice(["", "x"]) + half[::-1] if rng.random() < 0.5 else _word(rng, rng.randint(1, 6))


_FLIPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Mod,
    ast.Mod: ast.FloorDiv,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


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
        spots = [
            (n, "op") for n in nodes if isinstance(n, (ast.BinOp, ast.AugAssign, ast.BoolOp)) and type(n.op) in _FLIPS
        ]
        spots += [
            (n, i) for n in nodes if isinstance(n, ast.Compare) for i, op in enumerate(n.ops) if type(op) in _FLIPS
        ]
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


def function_body(signature: str, completion: str) -> str:
    """A function written after `signature`: the signature and the indented lines that follow it."""
    lines = []
    for line in completion.split("\n"):
        if line.strip() and not line.startswith((" ", "\t")):
            break
        lines.append(line)
    return signature + "\n" + "\n".join(lines).rstrip() + "\n"


def humaneval_item(problem: dict, completion: str | None = None) -> dict:
    """A HumanEval problem as a code item, with its canonical solution unless a completion is given."""
    return {
        "prompt": problem["prompt"],
        "completion": problem["canonical_solution"] if completion is None else completion,
        "test": problem["test"],
        "entry_point": problem["entry_point"],
    }
