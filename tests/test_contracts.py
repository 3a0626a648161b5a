"""The leaf contracts: the typed style spec parsed once, and no import cycle anywhere."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from vidstyle.contracts import StyleMix, StyleSpec
from vidstyle.errors import StyleError

PKG = Path(__file__).resolve().parents[1] / "vidstyle"


def test_style_mix_parses_names_paths_and_mixes() -> None:
    assert StyleMix.parse("starry").parts == (("starry", 1.0),)
    mix = StyleMix.parse("starry:3, wave:1")
    assert mix.parts == (("starry", 0.75), ("wave", 0.25))
    assert StyleMix.parse("starry:1,starry:1").parts == (("starry", 1.0),)  # merged
    assert StyleMix.parse("a:0,b:2").parts == (("b", 1.0),)  # zero weight dropped
    assert StyleMix.parse("C:/art/pic.jpg:0.5,wave:0.5").refs == ("C:/art/pic.jpg", "wave")
    assert StyleMix.parse("C:/art/pic.jpg").refs == ("C:/art/pic.jpg",)
    for bad, words in [("", "empty"), ("starry:x", "bad style weight"),
                       ("starry:-1", ">= 0"), ("a:0,b:0", "zero"), ("starry,,wave", "empty"),
                       ("starry:inf", "finite")]:
        with pytest.raises(StyleError, match=words):
            StyleMix.parse(bad)


def test_style_spec_text_and_file_names() -> None:
    spec = StyleSpec.parse("starry:0.6,wave:0.4")
    assert str(spec) == "starry:0.6,wave:0.4"
    assert spec.slug() == "starry60-wave40"
    assert StyleSpec.parse(spec) is spec
    assert StyleSpec.parse("my dir/Pic 1.jpg").slug() == "Pic-1"
    slugs = {StyleSpec.parse(t).slug() for t in
             ("starry", "starry:0.6,wave:0.4", "starry:0.4,wave:0.6", "starry,wave")}
    assert len(slugs) == 4
    for s in slugs:
        assert not set(s) & set(":,/\\ ")
    per_person = StyleSpec(StyleMix.parse("starry"), instances=((1, StyleMix.parse("wave")),),
                           keep_background=True)
    assert not per_person.is_plain and per_person.refs() == ("starry", "wave")
    assert per_person.slug() == "starry_p1-wave_bg-none"


def _imports(path: Path, module: str) -> set[str]:
    """vidstyle modules ``module`` imports anywhere (top level, functions, TYPE_CHECKING
    blocks excluded since they never run)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("vidstyle"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("vidstyle"):
                out.add(name)
                out.update(f"{name}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = p
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imp in _imports(path, name):
            # an import of a.b.c depends on the deepest known module among its prefixes
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                deps.add(imp)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(10000)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_the_package() -> None:
    """Every import, including those inside functions, forms a graph without cycles: a
    package imports what it contains only through its own modules (``vidstyle`` itself,
    whose ``__init__`` holds only the version, is a leaf)."""
    graph = _graph()
    graph["vidstyle"] = set()  # the root package's __init__ defines __version__ only
    for name in graph:  # a package's __init__ may re-export its own submodules
        graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_contracts_is_a_leaf() -> None:
    deps = _graph()["vidstyle.contracts"]
    assert deps <= {"vidstyle.errors"}, deps
