"""The layout's rules, checked over the source: each module small enough to read whole, the package's
imports a graph without cycles, no module reaching into another's private names, and the sandbox's
worker given every file it imports.
"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "touchstone"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(tree: ast.Module, known: dict[str, Path], here: str):
    """(module, name) for every import of a Touchstone module in `tree`, at any depth; `name` is the
    imported name of a `from` import (None for a plain import or a submodule)."""
    package = here if known[here].name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "touchstone":
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "touchstone":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full, None) if full in known else (base, alias.name)


def owner(name: str, known) -> str:
    while name not in known:
        name = name.rpartition(".")[0]
    return name


def test_no_module_is_longer_than_the_limit():
    too_long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_no_private_name_is_imported_from_another_module():
    known = modules()
    private = []
    for here, path in known.items():
        for module, name in imported(ast.parse(path.read_text(encoding="utf-8")), known, here):
            if name and name.startswith("_") and not name.startswith("__") and owner(module, known) != here:
                private.append(f"{here} imports {module}.{name}")
    assert not private, private


def test_the_import_graph_has_no_cycle():
    known = modules()
    edges = {
        here: {owner(m, known) for m, _ in imported(ast.parse(p.read_text(encoding="utf-8")), known, here)} - {here}
        for here, p in known.items()
    }
    # A package's __init__ importing its own submodules is how a package re-exports; a submodule
    # importing its package's __init__ back is the cycle worth finding, so only the first is dropped.
    for here in edges:
        if known[here].name == "__init__.py":
            edges[here] = {m for m in edges[here] if not m.startswith(here + ".")}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_sandbox_worker_is_given_every_file_it_imports():
    """The worker runs alone under `python -I -S`, Touchstone not importable: every file it imports, at
    any depth, is one of its siblings imported by plain name and bound beside it (`WORKER_FILES`), and
    nothing else it imports is outside the standard library."""
    from touchstone.sandbox import WORKER_FILES

    folder = PACKAGE / "sandbox"
    siblings = {p.stem for p in folder.glob("*.py")}
    needed, todo = set(), ["worker"]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                tops = [(node.module or "").split(".")[0] if not node.level else "."]
            else:
                continue
            for top in tops:
                assert top in siblings or top in sys.stdlib_module_names, f"{name}.py imports {top}"
                todo += [top] if top in siblings else []
    assert sorted(WORKER_FILES) == sorted(f"{name}.py" for name in needed)
