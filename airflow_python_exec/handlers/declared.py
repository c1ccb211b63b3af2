"""What a data platform handler file declares, read without running it (DESIGN.md, "Functions").

The platform's files say their outputs in a decorator, ``@handler(outputs=["dataset"])``, and name
the project's data items they read in a call, ``project.get_dataitem("raw")``. The worker needs both
before the job's process starts (outputs are assets, known when the DAG is parsed; a data item is
copied in before the start), and it never runs the job's code: it reads the file's syntax tree
(:mod:`ast`) and takes literal values only. A file that does not parse declares nothing (the run
then fails on the job's side, with Python's own message).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

#: The decorator's module, as the platform's files import it.
PLATFORM_MODULE = "digitalhub_runtime_python"
#: Largest handler file read, in bytes (a job file, read with the worker's rights).
MAX_SOURCE_BYTES = 4 << 20


def handler_file(root: Path, handler: str, main_file: Path | None) -> Path | None:
    """The ``.py`` file that defines ``handler`` (``module.path:function`` under ``root``, or a bare
    function of ``main_file``), or ``None`` when it is not a plain file of the source root."""
    module, colon, _function = handler.rpartition(":")
    if not colon:
        return main_file
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def _tree(path: Path | None) -> ast.Module | None:
    """The syntax tree of ``path``, or ``None`` when it cannot be read or parsed. CPython's parser
    gives up on deep nesting or a long chain (``not not ...``, ``a.b.b...``, ``1+1+...``) with
    ``RecursionError`` or ``MemoryError``, not ``SyntaxError``: such a file declares nothing too, so a
    hostile handler file cannot fail the worker or the Python jobs page that describes it."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return ast.parse(f.read(MAX_SOURCE_BYTES + 1)[:MAX_SOURCE_BYTES])
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def decorator_outputs(path: Path | None, function: str) -> list[Any] | None:
    """The ``outputs`` of a ``@handler(outputs=[...])`` decorating ``function`` (a top-level ``def``;
    the last part of a dotted name) in ``path``; ``None`` when there is none or it is not literal."""
    tree = _tree(path)
    name = function.rpartition(":")[2].rsplit(".", 1)[-1]
    for node in ast.walk(tree) if tree is not None else ():
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name != name:
            continue
        for decorator in node.decorator_list:
            if not isinstance(decorator, ast.Call) or _called(decorator.func) != "handler":
                continue
            given = [k.value for k in decorator.keywords if k.arg == "outputs"] or decorator.args[:1]
            try:
                value = ast.literal_eval(given[0]) if given else None
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                return None  # not a literal: the job's side still reads it when the handler is loaded
            return list(value) if isinstance(value, (list, tuple)) else None
    return None


def project_dataitems(path: Path | None) -> list[str]:
    """The literal names passed to ``<anything>.get_dataitem("name")`` (or ``name="name"``) in
    ``path``, in order, once each."""
    tree = _tree(path)
    names: list[str] = []
    for node in ast.walk(tree) if tree is not None else ():
        if not isinstance(node, ast.Call) or _called(node.func) != "get_dataitem":
            continue
        given = node.args[:1] + [k.value for k in node.keywords if k.arg in ("name", "entity_name")]
        for value in given:
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value not in names:
                names.append(value.value)
    return names


def _called(func: ast.expr) -> str | None:
    """``handler`` for ``handler(...)`` and ``x.handler(...)``."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def job_json_declares_data(job: Any, folder: Path | None) -> bool:
    """Whether the ``job.json`` of a job path that is not a template names ``function.inputs`` or
    ``function.outputs``: a plain read of the JSON, so that parsing a DAG file loads the job models
    (pydantic) only for a job that has data items to declare. Read with :func:`read_capped`, as every
    read of ``job.json`` is (DESIGN.md "Reach: what a job may name")."""
    if not isinstance(job, str) or "{{" in job:
        return False
    path = Path(job).expanduser()
    if not path.is_absolute() and folder is not None:
        path = folder / path
    config = path if path.suffix == ".json" else path / "job.json"
    from airflow_python_exec.errors import JobConfigError
    from airflow_python_exec.isolation.job_files import read_capped

    try:  # capped and checked on the open file: a FIFO or /dev/zero in a job folder must not hang a parse
        data = json.loads(read_capped(config, "job.json").decode("utf-8"))
    except (OSError, ValueError, RecursionError, JobConfigError):
        return False  # an unreadable job fails its task with the one-line error when it runs
    function = data.get("function") if isinstance(data, dict) else None
    if not isinstance(function, dict):
        return False
    return bool(function.get("inputs") or function.get("outputs")) or _platform_handler(config.parent, data, function)


def _platform_handler(folder: Path, data: dict[str, Any], function: dict[str, Any]) -> bool:
    """Whether the job's handler file imports the data platform's module (its ``@handler`` may
    declare outputs): a plain text search, no parsing."""
    handler = function.get("handler")
    if not isinstance(handler, str) or function.get("source") or function.get("code") or function.get("base64"):
        return False
    names = [data["packageName"]] if isinstance(data.get("packageName"), str) else ["app.py", "main.py"]
    main = next((folder / n for n in names if (folder / n).is_file()), None)
    try:
        path = handler_file(folder, handler, main)
        return path is not None and PLATFORM_MODULE in path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return False
