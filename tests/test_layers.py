"""The layering DESIGN.md asks for, read from the source (every import, also those inside functions):
``core`` imports nothing else of alref, ``agent`` never imports ``pipeline``, lower layers never import
the interfaces, and the trace package has no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "alref"


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name == "alref" or name.startswith("alref.")}


def modules(package: str) -> dict[str, set[str]]:
    root = PACKAGE / package if package else PACKAGE
    return {
        ".".join(("alref", *p.relative_to(PACKAGE).with_suffix("").parts)): imports_of(p)
        for p in sorted(root.rglob("*.py"))
    }


def offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for module, names in modules(package).items():
        hits = sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        if hits:
            bad[module] = hits
    return bad


def test_core_imports_nothing_else_of_alref():
    bad = {m: [n for n in names if not n.startswith("alref.core")] for m, names in modules("core").items()}
    assert {m: n for m, n in bad.items() if n} == {}


def test_agent_never_imports_the_pipeline_or_the_interfaces():
    assert offenders("agent", ("alref.pipeline", "alref.cli", "alref.app", "alref.eval")) == {}


def test_lower_layers_do_not_import_upper_ones():
    upper = ("alref.agent", "alref.pipeline", "alref.eval", "alref.cli", "alref.app")
    for package in ("media", "audio", "tools", "trace"):
        assert offenders(package, upper) == {}, package
    assert offenders("pipeline", ("alref.eval", "alref.cli", "alref.app")) == {}


def assert_no_import_circle(package: str) -> None:
    graph = {m: {n.rsplit(".", 1)[0] if n.rsplit(".", 1)[0] in modules(package) else n for n in names}
             for m, names in modules(package).items()}  # fmt: skip
    graph = {m: {n for n in names if n in graph and n != m} for m, names in graph.items()}
    seen: dict[str, int] = {}

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import circle: {' -> '.join((*path, m))}"
        if seen.get(m):
            return
        for n in graph[m]:
            visit(n, (*path, m))
        seen[m] = 1

    for m in graph:
        visit(m, ())


def test_the_trace_package_has_no_import_circle():
    assert_no_import_circle("trace")
    assert not any(p.name.startswith("trace_") for p in PACKAGE.glob("*.py"))  # one package, no stragglers


def test_the_ray_executor_uses_the_batch_runner_one_way():
    """cluster imports batch, batch never cluster (they imported each other)."""
    graph = modules("pipeline")
    assert "alref.pipeline.batch" in graph["alref.pipeline.cluster"]
    assert not {n for n in graph["alref.pipeline.batch"] if n.startswith("alref.pipeline.cluster")}


def test_the_threads_module_imports_neither_torch_nor_alref():
    """alref/threads.py runs when alref is imported, before torch may load (OMP_WAIT_POLICY)."""
    tree = ast.parse((PACKAGE / "threads.py").read_text(encoding="utf-8"))
    names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {n for n in names if n.split(".")[0] in ("torch", "alref", "numpy", "transformers")}


# the names under OUT/work/ and OUT/trace/
FILE_NAMES = {"agent.sqlite", "detections.json", "events.jsonl"}
FOLDERS = {"work", "trace", "samples", "tiles", "boxes", "agent", "images"}


def spelled_names(path: Path) -> list[str]:
    """Path parts written as literals: ``x / "work"``, and file names as whole string constants."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and isinstance(node.right, ast.Constant)
        ):
            if node.right.value in FOLDERS | FILE_NAMES:
                found.append(node.right.value)
        elif isinstance(node, ast.Constant) and id(node) not in docstrings and node.value in FILE_NAMES:
            found.append(node.value)
    return found


def test_the_work_folder_names_live_in_one_place():
    """Only core/workspace.py names the folders and files under OUT/work/ and OUT/trace/."""
    spelled = {
        str(p.relative_to(PACKAGE)): spelled_names(p)
        for p in PACKAGE.rglob("*.py")
        if p.name != "workspace.py"
    }
    assert {p: n for p, n in spelled.items() if n} == {}
