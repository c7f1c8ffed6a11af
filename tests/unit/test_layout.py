"""The layout ARCHITECTURE.md promises, checked from the source: no import cycles, transports that never
import torch or the pipelines, and route modules that never reach back into the app that installs them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PICO = ROOT / "pico"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PICO.rglob("*.py")}


def imports_at_load(name: str) -> set[str]:
    """The pico modules ``name`` imports when it is imported (not inside functions, not for type checking)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parent, *([base] if base else [])])
                submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
                found.update(submodules)
                if len(submodules) < len(node.names):  # names defined in the module itself
                    found.add(base)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text("utf-8")).body)
    return (found & MODULES.keys()) - {name}


GRAPH = {name: imports_at_load(name) for name in MODULES}


def test_no_module_imports_itself_back_through_others():
    cycles = []
    for start in GRAPH:
        stack, seen = [(start, (start,))], set()
        while stack:
            name, path = stack.pop()
            for nxt in GRAPH[name]:
                if nxt == start:
                    cycles.append(" -> ".join((*path, start)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*path, nxt)))
    assert cycles == []


def test_transports_reach_the_pipelines_only_through_the_engine_factory():
    transports = [name for name in GRAPH if name.startswith(("pico.server", "pico.cli", "pico.schemas",
                                                                 "pico.catalog"))]
    reaching = {name: sorted(n for n in GRAPH[name] if n.startswith("pico.pipelines.")
                             and n not in ("pico.pipelines.resize", "pico.pipelines.prompt_embeds"))
                for name in transports}
    assert {name: found for name, found in reaching.items() if found} == {}


def test_only_the_serve_entry_point_imports_the_app():
    importers = sorted(name for name, found in GRAPH.items() if "pico.server.app" in found)
    assert importers == ["pico.server.serve"]  # (pico.ray.server too, when --ray asks for it)


def test_the_server_cli_and_catalog_import_no_torch():
    modules = sorted(name for name in MODULES if name.startswith(("pico.server", "pico.cli", "pico.catalog",
                                                                     "pico.schemas", "pico.jobs", "pico.config")))
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
