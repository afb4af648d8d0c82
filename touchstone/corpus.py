"""The embedded default corpus: English prose that every Python installation already carries.

    from touchstone.corpus import default_sources
    prepare(default_sources(), "data/orig", PrepareConfig())

It is the Python standard library's own documentation: the language reference and library topics of
`pydoc_data.topics` (what `help("if")` shows), and every docstring of every module, class and
function in the standard library's `.py` sources, read with `ast` (nothing is imported or executed).
The text is written once, atomically, to a cache folder (`corpus/python-X.Y` in `touchstone.files.cache_dir()`,
default `~/.cache/touchstone`) as one `.txt` file per top-level module, and reused after that.

Guaranteed: no download; the same Python version gives the same files. Not guaranteed: the same text
across Python versions (the folder name carries the version), or that a trimmed installation without
`.py` sources yields more than the topics.
"""

from __future__ import annotations

import ast
import sys
import sysconfig
from pathlib import Path

from touchstone.files import MANIFEST, atomic_dir, cache_dir, write_manifest

# Test suites and demos repeat the library's prose or are not prose at all.
SKIP_PARTS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3", "turtledemo"}


def module_text(source: bytes, name: str) -> str:
    """The docstrings of a module, its classes and functions, as paragraphs; "" if it has none."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    parts = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node)
        if not doc or len(doc) < 40:  # one-liners like "Return self." say little
            continue
        title = name if isinstance(node, ast.Module) else f"{name}.{node.name}"
        parts.append(f"{title}\n\n{doc.strip()}")
    return "\n\n".join(parts)


def topics_text() -> str:
    """The language reference topics shipped for `help()`."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return ""
    return "\n\n".join(topics[key].strip() for key in sorted(topics))


def build_corpus(stdlib: Path, out: Path) -> Path:
    """Write the corpus of the standard library at `stdlib` into `out` (atomically, manifest last)."""
    by_module: dict[str, list[str]] = {}
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if SKIP_PARTS & set(rel.parts) or rel.name.startswith("test_"):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        text = module_text(path.read_bytes(), name)
        if text:
            by_module.setdefault(rel.parts[0].removesuffix(".py"), []).append(text)
    with atomic_dir(out, overwrite=True) as staging:
        topics = topics_text()
        if topics:
            (staging / "python-reference.txt").write_text(topics + "\n", encoding="utf-8")
        for top, texts in sorted(by_module.items()):
            (staging / f"{top}.txt").write_text("\n\n".join(texts) + "\n", encoding="utf-8")
        write_manifest(staging, {"kind": "corpus", "python": sys.version.split()[0], "stdlib": str(stdlib)})
    return out


def default_sources(cache: str | Path | None = None) -> list[str]:
    """The embedded corpus as `prepare` sources (one folder), built on first use in `cache` (default:
    `touchstone.files.cache_dir()`)."""
    root = Path(cache) if cache else cache_dir()
    out = root / "corpus" / f"python-{sys.version_info.major}.{sys.version_info.minor}"
    if not (out / MANIFEST).exists():
        build_corpus(Path(sysconfig.get_paths()["stdlib"]), out)
    return [str(out)]
