"""The imports between the package's layers, drawn as the mermaid diagram in docs/architecture.md.

``python tools/architecture.py`` rewrites the diagram from the code (``make architecture``);
``--check`` exits 1 when the committed diagram no longer matches the imports (a test runs it).
Reads the imports with grimp, the library import-linter uses, so the picture and ``make lint`` agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT_PACKAGE = "metrics_center"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
BEGIN, END = "<!-- imports:begin (make architecture) -->", "<!-- imports:end -->"
#: Layers top to bottom, as in pyproject's import-linter contract; settings, errors and i18n (imported by
#: nearly everything) are left out of the picture to keep it readable.
LAYERS = [
    ["cli"],
    ["demo"],
    ["web", "bi"],
    ["orchestration"],
    ["tasks"],
    ["notify"],
    ["approvals", "checks"],
    ["mart"],
    ["definitions", "observability"],
]
FOUNDATION = {"settings", "errors", "i18n"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def edges() -> list[tuple[str, str]]:
    """Distinct (importer, imported) pairs between subpackages, every import counted (TYPE_CHECKING too)."""
    import grimp

    graph = grimp.build_graph(ROOT_PACKAGE)
    pairs = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = layer_of(module), layer_of(imported)
            if a and b and a != b and not {a, b} & FOUNDATION:
                pairs.add((a, b))
    return sorted(pairs)


def mermaid() -> str:
    lines = ["```mermaid", "flowchart TB"]
    for i, row in enumerate(LAYERS):
        lines.append(f'  subgraph L{i}[" "]')
        lines.append("    direction LR")
        lines.extend(f"    {name}[{name}/]" for name in row)
        lines.append("  end")
    lines.extend(f"  {a} --> {b}" for a, b in edges())
    lines.append("```")
    return "\n".join(lines)


def _with_diagram(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{mermaid()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"{DOC}: the markers {BEGIN} … {END} are missing", file=sys.stderr)
        return 1
    updated = _with_diagram(text)
    if "--check" in argv:
        if updated != text:
            print(f"{DOC} is stale: run `make architecture`", file=sys.stderr)
            return 1
        print(f"{DOC}: the diagram matches the imports")
        return 0
    DOC.write_text(updated, encoding="utf-8")
    print(f"wrote the import diagram into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
