"""The package's structure, read from its imports (DESIGN.md, "Layers").

Lower layers never import higher ones, and the package's folders (and root modules) never import
each other in a circle. Every import counts, the ones inside functions too: an import deferred for
speed still ties the two modules together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "airflow_python_exec"
NAME = "airflow_python_exec"

#: Lowest first. A module may import its own layer and those below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "logs", "compat"),  # foundation
    ("redaction", "crypto"),  # secrets
    ("settings", "settings_file"),  # the only place that reads configuration
    ("isolation",),  # what confines a run
    ("models",),  # the job and the pure parsers of its parts
    ("environments",),  # the provisioner
    ("handlers",),  # handler jobs: bootstrap, results, sources, data items
    ("validator", "builder"),
    ("service", "run_result"),
    ("hooks",),  # the Airflow adapters
    ("operators", "decorators"),
    ("job_dags",),
    ("cli", "plugins", "get_provider_info"),
]
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def modules() -> dict[str, Path]:
    """Dotted module name (without the package prefix; ``""`` for the package itself) -> file."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (``from x import submodule`` counts the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").split(".")[0] == NAME:
                target = node.module.partition(".")[2] if node.module else ""
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found |= {a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == NAME}
    return {m for m in found if m in known and m != name}


def unit(module: str) -> str:
    """The folder or root module a module belongs to: ``isolation.sandbox`` -> ``isolation``."""
    return module.split(".")[0]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_folder_and_root_module_has_a_layer() -> None:
    units = {unit(m) for m in modules() if m}
    assert units - set(LAYER_OF) == set(), "give each new folder or root module a layer in LAYERS"
    assert set(LAYER_OF) - units == set(), "LAYERS names a unit that no longer exists"


def test_no_import_runs_up_the_layers() -> None:
    upward = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source  # the package root is a lazy facade over every layer (PEP 562)
        for target in targets
        if target and LAYER_OF[unit(target)] > LAYER_OF[unit(source)]
    ]
    assert upward == []


def test_no_two_folders_import_each_other_in_a_circle() -> None:
    between: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph().items():
        for target in targets:
            if source and target and unit(source) != unit(target):
                between[unit(source)].add(unit(target))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in between[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    loops = sorted(u for u in list(between) if reaches(u, u, {u}))
    assert loops == []


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a foundation module importing the service is reported."""
    path = tmp_path / "errors.py"
    path.write_text("from airflow_python_exec.service import PythonExecutionService\n")
    found = imports("errors", path, modules())
    assert found == {"service"} and LAYER_OF[unit("service")] > LAYER_OF["errors"]


def private_imports(path: Path) -> list[str]:
    """``_name``s that ``path`` imports from another module of the package (``from .x import _y``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").split(".")[0] == NAME):
            continue
        found += [
            f"{path.parent.name}/{path.name}:{node.lineno} {alias.name}"
            for alias in node.names
            if alias.name.startswith("_") and not alias.name.startswith("__")
        ]
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    """A ``_name`` is its module's own: one that another module needs is public, with a docstring."""
    assert [hit for path in modules().values() for hit in private_imports(path)] == []


def test_the_rule_catches_a_private_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from .output import _Lines, __version__\nfrom airflow_python_exec.models.rules import _read_json\n"
    )
    folder = probe.parent.name
    assert private_imports(probe) == [f"{folder}/probe.py:1 _Lines", f"{folder}/probe.py:2 _read_json"]
