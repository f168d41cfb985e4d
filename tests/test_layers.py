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
