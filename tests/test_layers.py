"""The one-way layer order of CONTRACTS.md, enforced: a module imports only from layers to its left (or its own),
counting imports inside functions too. `errors` and `paths` are shared utilities every layer may use."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "evoprune"
ORDER = ["model", "data", "stats", "formula", "prune", "structured", "fitness", "search", "distributed", "export",
         "evaluation", "jobs", "cli"]
SHARED = {"errors", "paths"}


def _layer(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {n.split(".")[1] for n in names if n.startswith("evoprune.")}
    return found


def test_every_package_is_placed_in_the_order():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages <= set(ORDER), f"place {sorted(packages - set(ORDER))} in ORDER and CONTRACTS.md"


def test_imports_point_down_the_flow():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        layer = _layer(path)
        if layer in SHARED or layer == "__init__":
            continue
        for target in _imports(path) - SHARED - {layer}:
            if target not in ORDER or ORDER.index(target) > ORDER.index(layer):
                bad.append(f"{path.relative_to(ROOT.parent)} ({layer}) imports {target}")
    assert not bad, "\n".join(bad)


def test_contracts_md_states_the_same_order():
    text = (ROOT.parent / "CONTRACTS.md").read_text(encoding="utf-8")
    assert " → ".join(ORDER) in text
