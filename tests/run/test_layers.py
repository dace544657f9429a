"""The layers of docs/ARCHITECTURE.md, held to the code: every import between ca12's packages
(module-level and function-local alike) goes downwards, and no library module imports a command."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first; a package may import its own layer and those below it. Commands (and the Python
# API, which runs the same library) sit on top and import anything.
LAYERS = [
    {"errors", "schema", "sections", "paths", "seeding", "untrusted", "cli", "advantages"},
    {"game_theory", "meta", "distributed"},
    {"envs"},
    {"nets"},
    {"data"},
    {"selfplay"},
    {"algos"},
    {"callbacks"},
    {"run"},
    {"multirun", "analysis"},
]
COMMANDS = {"fit", "evaluate", "compare", "pbt", "api", "__init__", "__main__"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("ca12/**/*.py"), *ROOT.glob("callbacks/*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("ca12", *parts) if parts[0] == "callbacks" else parts).removesuffix(".__init__")
        found[name] = path
    return found


def _package(module: str) -> str:
    return (module.split(".") + ["__init__"])[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return {name for name in names if name.startswith("ca12.")}


def test_every_import_between_packages_goes_down_the_layers():
    modules = _modules()
    layer = {package: i for i, packages in enumerate(LAYERS) for package in packages}
    assert set(map(_package, modules)) <= set(layer) | COMMANDS, "a new top-level package: place it in LAYERS (and docs/ARCHITECTURE.md)"
    upward = []
    for name, path in modules.items():
        source = _package(name)
        for target in _imports(path) & set(modules):
            imported = _package(target)
            if imported in COMMANDS and imported != "__init__" and source not in COMMANDS:
                upward.append(f"{name} imports the command {target}")
            elif source in layer and imported in layer and layer[imported] > layer[source]:
                upward.append(f"{name} ({source}) imports {target} ({imported}, a layer above)")
    assert not upward, "\n".join(sorted(upward))
