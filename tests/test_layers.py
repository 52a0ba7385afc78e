"""Imports point one way: the HTTP layer (`api`, `server`) uses the flows, the flows use the connectors, the
outbound client, the stores and security, and none of those reaches back up. A connector that imports a flow
would pull the server's request handling into every connector and make the two impossible to change apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "appconnect"

#: package -> the appconnect packages it must never import
_FORBIDDEN: dict[str, tuple[str, ...]] = {
    "connectors": ("flows", "api", "server"),
    "outbound": ("flows", "api", "server", "connectors"),
    "store": ("flows", "api", "server", "connectors"),
    "security": ("flows", "api", "server"),
    "flows": ("api", "server"),
}


def _imports(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(_FORBIDDEN))
def test_a_lower_layer_never_imports_a_higher_one(package: str) -> None:
    modules = sorted((SRC / package).rglob("*.py"))
    assert modules, package
    wrong = [
        f"{module.relative_to(SRC)} imports {name}"
        for module in modules
        for name in sorted(_imports(module))
        for higher in _FORBIDDEN[package]
        if name == f"appconnect.{higher}" or name.startswith(f"appconnect.{higher}.")
    ]
    assert wrong == []
