"""
The flow is sources -> translators -> tenant model -> compile -> plans ->
data plane -> admin; a layer may import the ones before it only.  If the
data plane could read the config model it would soon re-interpret tenant
declarations per request, which is compile's job, done once.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import tenantgw

PACKAGE = Path(tenantgw.__file__).parent

# Layer -> the tenantgw packages it must never import.
FORBIDDEN = {
    "plans": ("config", "translators", "sources", "compile", "dataplane", "admin", "app"),
    "dataplane": ("config", "translators", "sources", "compile", "app"),
    "http2": ("config", "translators", "sources", "compile", "app"),
    "wire": ("config", "translators", "sources", "compile", "dataplane", "app"),
    "http1": ("config", "translators", "sources", "compile", "dataplane", "http2", "admin", "app"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in C{path} names, type-checking ones included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def runtime_imports(path: Path) -> set[str]:
    """The tenantgw modules C{path} imports when it runs: not those under TYPE_CHECKING."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names.add(child.module)
            elif isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in names if name.startswith("tenantgw.")}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph.get(module, ())):
            if other not in index:
                strong(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            strong(module)
    return cycles


def offending(layer: str, modules: set[str]) -> list[str]:
    banned = tuple(f"tenantgw.{package}" for package in FORBIDDEN[layer])
    return sorted(m for m in modules if m.startswith(banned))


class LayerTests(SynchronousTestCase):
    def test_layers_import_nothing_they_must_not(self) -> None:
        problems = []
        for layer in FORBIDDEN:
            for path in sorted((PACKAGE / layer).glob("*.py")):
                for module in offending(layer, imported_modules(path)):
                    problems.append(f"{path.relative_to(PACKAGE)} imports {module}")
        self.assertEqual(problems, [])

    def test_the_checker_sees_a_forbidden_import(self) -> None:
        """The test above would pass on any code if the checker missed imports."""
        modules = {"tenantgw.config.model", "tenantgw.config.model.Route", "tenantgw.values"}
        self.assertEqual(
            offending("dataplane", modules),
            ["tenantgw.config.model", "tenantgw.config.model.Route"],
        )

    def test_loading_the_data_plane_loads_no_config_model(self) -> None:
        """Also as loaded: an indirect import through another module counts."""
        script = (
            "import sys\n"
            "import tenantgw.dataplane.gateway, tenantgw.admin.metrics\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('tenantgw.'))))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.split()
        self.assertIn("tenantgw.plans.routes", out)
        self.assertEqual(
            [m for m in out if m.startswith(("tenantgw.config", "tenantgw.compile"))], []
        )

    def test_no_import_cycle(self) -> None:
        """
        Modules that import each other (even inside functions) cannot be
        read, tested or replaced one at a time; a cycle once ran through
        seven data-plane and admin modules.
        """
        graph = {}
        for path in sorted(PACKAGE.rglob("*.py")):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            graph[module] = runtime_imports(path)
        self.assertEqual(import_cycles(graph), [])
        self.assertEqual(
            import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]]
        )
