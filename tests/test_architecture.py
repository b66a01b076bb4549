"""The package's plan holds: layers only import downward, no cycles, no private names across modules.

The layers themselves are import-linter's contract in pyproject.toml (``make lint`` runs it too); the picture
of them in docs/architecture.md is generated from the same imports and must match them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "metrics_center"
ROOT_MODULES = {"__init__.py", "settings.py", "errors.py"}


def _graph():
    import grimp

    return grimp.build_graph("metrics_center")


def test_the_layers_contract_is_kept():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_imports_itself_back_through_others():
    graph = _graph()
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.find_shortest_chain(importer=imported, imported=module):
                cycles.append((module, imported))
    assert not cycles, f"import cycles through: {cycles[:10]}"


def test_the_package_root_holds_only_settings_errors_and_the_entry_point():
    extra = {p.name for p in PACKAGE.iterdir() if p.is_file()} - ROOT_MODULES
    assert not extra, f"{sorted(extra)} belong in a layer (docs/architecture.md: where a new module goes)"


def _our_modules() -> set[str]:
    return {m for m in _graph().modules}


def test_no_private_name_is_imported_or_reached_into_across_modules():
    modules = _our_modules()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: set[str] = set()  # names bound to one of our modules in this file
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("metrics_center"):
                for name in node.names:
                    # gettext's `_` is public by convention (the translation function, metrics_center.i18n)
                    if name.name.startswith("_") and not name.name.startswith("__") and name.name != "_":
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.module}.{name.name}")
                    if f"{node.module}.{name.name}" in modules:
                        aliases.add(name.asname or name.name)
            elif isinstance(node, ast.Import):
                for name in node.names:
                    if name.name.startswith("metrics_center") and name.asname:
                        aliases.add(name.asname)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, "private names used across modules (make them public, or a module of their own):\n" + (
        "\n".join(found)
    )


def test_the_diagram_in_the_docs_is_the_imports_of_the_code():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "architecture.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_layer_says_what_belongs_there():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 60, (
            f"{init.relative_to(REPO)} needs a docstring: what belongs here, what it imports"
        )
