"""The package's layers, checked on its source: imports point down, no cycles, and imports
inside functions are few and say why (README, "Architecture").

    core   (pure: parsing, sessions, features, models, rules, synthetic fleet)
    settings
    store  (PostgreSQL)
    jobs   (Ray)
    http   (the HTTP face)
    cli    (the command line face, which may start the HTTP one)

A module may import its own layer and those above it in this list; ``errors`` and the package
itself sit below everything. Within ``jobs``, the stage jobs import no other job (only the
Ray helpers); ``pipeline`` and ``evaluate`` compose them. SQL is spoken by ``store`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .helpers import ROOT

PACKAGE = ROOT / "logalyzer"
RANK = {
    "logalyzer": 0,
    "logalyzer.errors": 0,
    "logalyzer.core": 1,
    "logalyzer.settings": 2,
    "logalyzer.store": 3,
    "logalyzer.jobs": 4,
    "logalyzer.http": 5,
    "logalyzer.cli": 6,
}
STAGE_JOBS = {f"logalyzer.jobs.{n}" for n in ("ingest", "sessionize", "train", "detect", "alerts")}
#: Third-party packages a layer must not touch: the core knows nothing of Ray, PostgreSQL or
#: HTTP; storage nothing of Ray or HTTP.
FORBIDDEN = {
    "logalyzer.core": {"ray", "psycopg", "psycopg_pool", "fastapi", "starlette", "click"},
    "logalyzer.store": {"ray", "fastapi", "starlette", "click"},
}
MAX_IN_FUNCTION = 25


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = modules()


def layer(module: str) -> str:
    while module not in RANK:
        module = module.rpartition(".")[0]
    return module


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path) -> list[tuple[ast.AST, bool]]:
    """Every import statement of a module outside ``if TYPE_CHECKING:`` blocks, with whether
    it sits inside a function."""
    found: list[tuple[ast.AST, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return found


def targets(node: ast.AST, module: str) -> tuple[set[str], set[str]]:
    """(logalyzer modules, top-level third-party packages) an import statement loads."""
    ours, theirs = set(), set()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            pkg = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                pkg = pkg.rpartition(".")[0]
            base = f"{pkg}.{base}".rstrip(".")
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    for name in names:
        if name.split(".")[0] == "logalyzer":
            while name not in MODULES:
                name = name.rpartition(".")[0]
            ours.add(name)
        else:
            theirs.add(name.split(".")[0])
    return ours, theirs


def graph() -> dict[str, set[str]]:
    return {
        m: set().union(*([targets(n, m)[0] for n, _ in imports(p)] or [set()])) - {m}
        for m, p in MODULES.items()
    }


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    mine = layer(module)
    for node, _ in imports(MODULES[module]):
        ours, theirs = targets(node, module)
        for target in ours:
            assert RANK[layer(target)] <= RANK[mine], (
                f"{module} (layer {mine}) imports {target} (layer {layer(target)}), "
                f"line {node.lineno}"
            )
            if module in STAGE_JOBS:
                assert target not in STAGE_JOBS, f"stage job {module} imports stage job {target}"
        bad = theirs & FORBIDDEN.get(mine, set())
        assert not bad, (
            f"{module} (layer {mine}) imports {', '.join(sorted(bad))}, line {node.lineno}"
        )


def test_no_import_cycles():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.add(w)
                if w == v:
                    break
            if len(part) > 1:
                cycles.append(sorted(part))

    for v in sorted(g):
        if v not in index:
            strong(v)
    # a package's __init__ importing its own submodules (to register them) is not a cycle
    # unless a submodule imports the package back
    assert cycles == [], f"import cycles: {cycles}"


def test_imports_inside_functions_are_few_and_explained():
    found = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, in_function in imports(path):
            if in_function:
                # a comment on the line, or above the run of import lines it belongs to
                j = node.lineno - 2
                while lines[j].strip().startswith(("import ", "from ")):
                    j -= 1
                block = lines[j + 1 : node.lineno]
                explained = any("#" in line for line in block) or lines[j].strip().startswith("#")
                found.append((f"{module}:{node.lineno}", explained))
    unexplained = [where for where, ok in found if not ok]
    assert not unexplained, f"imports inside functions without a comment saying why: {unexplained}"
    assert len(found) <= MAX_IN_FUNCTION, (
        f"{len(found)} imports inside functions: {[w for w, _ in found]}"
    )


def test_every_module_is_in_a_layer():
    loose = [m for m in MODULES if m not in RANK and layer(m) == "logalyzer"]
    assert not loose, f"modules outside the layers: {loose}"


#: The one statement a face may run itself: the readiness probe's ``SELECT 1``.
SQL_ALLOWED = {("logalyzer.http.app", "check_database")}


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if RANK[layer(m)] >= RANK["logalyzer.jobs"])
)
def test_jobs_and_faces_leave_sql_to_the_store(module):
    """SQL lives in logalyzer.store: a job or a face calls its functions, never
    ``execute``/``executemany``/``copy`` on a connection itself."""
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute", "executemany", "copy")
                and (module, fn.name) not in SQL_ALLOWED
            ):
                found.append(f"{fn.name} (line {node.lineno})")
    assert not found, f"{module} runs SQL itself: {found}"
