"""The tree is the architecture: rooms by role, dependencies one way, no circles, a light fast path.

docs/architecture.md draws the rooms; these tests keep the code honest to the drawing. The import
graph is read from the source (every ``import``, including those inside functions: a lazy import
is still a dependency), so a circle or a dependency pointing the wrong way fails here before it
becomes a start-up order bug.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

PKG = Path(__file__).resolve().parent.parent / "detector" / "mimizuku"

#: room -> rank; a module may import its own room and rooms of a lower rank only
RANK = {
    "core": 0,
    "sources": 1, "store": 1,
    "engine": 2, "delivery": 2, "outputs": 2,
    "rules": 3,
    "integratord": 3,
    "serve": 4, "nightly": 4,
    "tools": 5,
    "": 6,  # the package's top: __init__ (lazy Mimizuku), __main__, cli, _version
}
#: whose import must not pull in the scientific stack (module -> why)
LIGHT = {
    "mimizuku.integratord.forward": "wazuh-integratord runs it once per alert",
    "mimizuku.integratord.call": "the per-alert call imports the engine only to score in-process",
    "mimizuku.serve.status": "`mimizuku status` answers at once",
    "mimizuku.serve.command": "`mimizuku serve --help` answers, and the daemon starts, before a model loads",
    "mimizuku.core.json_keys": "core is standard-library only",
    "mimizuku.engine.stream_snapshot": "the per-alert call and the scorer read it before the engine loads",
    "mimizuku.core.fields": "core is standard-library only",
    "mimizuku.core.settings": "core is standard-library only",
    "mimizuku.core.spool": "core is standard-library only",
    "mimizuku.delivery.events": "the fast path builds events",
    "mimizuku.sources.reader": "reading alerts needs no numerics",
}
HEAVY = ("numpy", "scipy", "sklearn", "pandas", "joblib", "matplotlib", "sqlalchemy", "requests")
MAX_LINES = 800


def _modules() -> Dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _graph() -> Dict[str, Set[str]]:
    mods = _modules()
    graph: Dict[str, Set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                     for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in type_only:  # ``if TYPE_CHECKING:`` imports never run: annotations only
                continue
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [src] + [f"{src}.{a.name}" for a in node.names]
            for t in targets:
                # the deepest module named (``a.b.c`` imports ``a.b.c``, not its parents' code)
                while t and t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != mod and t != "mimizuku":
                    graph[mod].add(t)
    return graph


def _room(mod: str) -> str:
    if mod == "mimizuku._version":  # the version string: a leaf every room may read
        return "core"
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else ""


def test_every_room_is_ranked():
    rooms = {_room(m) for m in _modules()}
    assert rooms <= set(RANK), f"unranked rooms: {sorted(rooms - set(RANK))} (add them to RANK and the docs)"


def test_no_import_circles():
    graph = _graph()
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    circles: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                circles.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:  # the tests after this one (deep alerts, deep spool items) meet the usual limit
        sys.setrecursionlimit(limit)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_dependencies_point_one_way():
    wrong = []
    for mod, deps in _graph().items():
        for dep in deps:
            a, b = _room(mod), _room(dep)
            if a != b and RANK[b] >= RANK[a]:
                wrong.append(f"{mod} ({a or 'top'}) imports {dep} ({b or 'top'})")
    assert not wrong, "dependencies against the rooms' order:\n" + "\n".join(sorted(wrong))


def test_no_module_reaches_into_another_modules_private_names():
    mods = _modules()
    reach = []
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("mimizuku"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__") and f"{node.module}.{a.name}" not in mods:
                        reach.append(f"{mod}: from {node.module} import {a.name}")
    assert not reach, "\n".join(reach)


def test_no_module_is_over_the_size_limit_outside_tools():
    big = [f"{m}: {n} lines" for m, p in _modules().items()
           if _room(m) != "tools" and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not big, f"modules over {MAX_LINES} lines: " + ", ".join(big)


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_light_modules_import_no_heavy_library(module):
    code = (f"import sys; import {module}; "
            f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(PKG.parent), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"importing {module} ({LIGHT[module]}) imported {r.stdout.strip()}"
