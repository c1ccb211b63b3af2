"""docs/functions.md's "Coming from the data platform" table names only what the code has: every
``Class.attribute`` of the handler's objects, every ``job.json`` key, every CLI command, and the
platform's own names the job side provides (``digitalhub_runtime_python.handler``). Also the
platform's ``job.json`` forms the models accept (``PYTHON3_12``, ``main.py``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from airflow_python_exec.cli import _parser as build_parser
from airflow_python_exec.handlers import DATA_MODULE, PLATFORM_MODULE
from airflow_python_exec.models import PythonJob

DOCS = Path(__file__).resolve().parent.parent / "docs" / "functions.md"
CODE = re.compile(r"`([^`]+)`")


def table() -> list[tuple[str, str]]:
    """The table's rows (the platform's cell, ours)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Coming from the data platform", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return [tuple(cell.strip() for cell in row.strip("|").split(" | ")) for row in rows]  # type: ignore[misc]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_keys() -> set[str]:
    """``job.json``'s keys, nested ones dotted (``pythonEnv.python_version``), from the models."""
    keys = set()
    for name, info in PythonJob.model_fields.items():
        top = info.alias or name
        keys.add(top)
        annotation = getattr(info.annotation, "__args__", (info.annotation,))
        for model in annotation:
            for sub, sub_info in getattr(model, "model_fields", {}).items():
                keys.add(f"{top}.{sub_info.alias or sub}")
    return keys


def test_the_table_has_the_platforms_main_names() -> None:
    platform = " ".join(theirs for theirs, _ in table())
    for name in ("digitalhub_runtime_python", "@handler(outputs=", "project.get_dataitem", "PYTHON3_12", "as_df"):
        assert name in platform


@pytest.mark.parametrize(("theirs", "ours"), table())
def test_every_name_on_our_side_exists_in_the_code(theirs: str, ours: str) -> None:
    data = load(DATA_MODULE, "python_exec_data_for_docs")
    platform = load(PLATFORM_MODULE, "digitalhub_runtime_python_for_docs")
    parser = build_parser()
    keys = job_keys()
    if "digitalhub_runtime_python" in theirs:
        assert callable(platform.handler)
    for span in CODE.findall(ours):
        head, _, attribute = span.partition(".")
        if head in ("DataItem", "Run", "Project") and attribute:
            cls = getattr(data, head)
            assert hasattr(cls, attribute) or attribute in cls.__init__.__code__.co_names, span
        elif span.startswith("airflow-python-exec "):
            words = [w for w in span.split()[1:] if w not in ("PATH", "NAME")]
            args = parser.parse_args([*words, *(["x"] if span.endswith(("PATH --result -", "NAME")) else [])])
            assert args.func is not None, span
        elif span.startswith(("function.", "pythonEnv.")) or span in ("project", "packageName"):
            assert span in keys, span


@pytest.mark.parametrize(("given", "expected"), [("PYTHON3_12", "3.12"), ("python3_11", "3.11"), ("3.12", "3.12")])
def test_python_version_takes_the_platforms_form(tmp_path, given: str, expected: str) -> None:
    (tmp_path / "main.py").write_text("def f():\n    return 1\n")
    config = {"jobId": "v", "function": {"handler": "f"}, "pythonEnv": {"python_version": given}}
    job = PythonJob.from_config(config, tmp_path)
    assert job.python_env is not None and job.python_env.python_version == expected
    assert job.main_file_name == "main.py"  # no packageName, no app.py: the platform's main.py
    (tmp_path / "app.py").write_text("def f():\n    return 2\n")
    assert PythonJob.from_config(config, tmp_path).main_file_name == "app.py"
