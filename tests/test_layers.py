"""The package's layers (ARCHITECTURE.md): each subpackage imports only the ones below it.

Read from the source with ``ast``, so an import that points the wrong way fails here before
it becomes a cycle, or before a lightweight tool (``gan-compare``) starts importing torch and
Lightning through the training script.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gan_research"

# What each top-level module or subpackage of gan_research may import from the others.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "utils": {"errors"},
    "config": set(),
    "data": {"errors", "utils"},
    # networks read published weights files through utils/weights.py (perceptual feature networks).
    "networks": {"errors", "utils"},
    # losses check their arguments with utils/validation.py.
    "losses": {"errors", "utils"},
    # metrics read data (the domain classifier's training set); families never import metrics.
    "metrics": {"errors", "utils", "config", "data"},
    "families": {"errors", "utils", "networks", "losses"},
    "callbacks": {"errors", "utils", "data", "metrics"},
    # Entry points.
    "train": {"errors", "utils", "config", "callbacks", "families"},
    "evaluate": {"errors", "utils", "config", "metrics"},
    "compare": {"errors", "utils", "config"},
    "bench": {"errors", "utils", "config", "data", "families", "losses", "train"},
    # gan-stylize: optimisation-based style transfer; its feature network comes through Hydra.
    "stylize": {"errors", "utils", "config", "data", "losses"},
}


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts == ("__init__.py",):
            continue
        owner = parts[0].removesuffix(".py")
        names: list[str] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            elif isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
        for name in names:
            bits = name.split(".")
            if bits[0] == "gan_research" and len(bits) > 1 and bits[1] != owner:
                found.setdefault(owner, set()).add(bits[1])
    return found


def test_every_module_has_a_layer():
    owners = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert owners - {"__init__"} <= set(ALLOWED), sorted(owners - set(ALLOWED))


def test_imports_point_down_the_layers():
    wrong = {
        owner: sorted(targets - ALLOWED[owner])
        for owner, targets in _imports().items()
        if targets - ALLOWED.get(owner, set())
    }
    assert not wrong, f"imports against ARCHITECTURE.md's layers: {wrong}"


def test_the_checker_sees_imports():
    # The families use networks and losses: a checker that found nothing would pass vacuously.
    assert {"networks", "losses"} <= _imports()["families"]
