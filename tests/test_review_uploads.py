"""Review B: attacks on uploads, the jobs page's visibility and the data platform handlers, each
written as the hostile uploader or job author would (one test per break found)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_python_exec.handlers.declared import decorator_outputs, project_dataitems
from airflow_python_exec.models import PythonJob
from airflow_python_exec.plugins.job_outputs import declared_outputs

#: Handler files that make CPython's parser give up with RecursionError or MemoryError, not SyntaxError.
HOSTILE_SOURCES = {
    "nested not": "x = " + "not " * 200_000 + "1\n",
    "nested minus": "x = " + "-" * 200_000 + "1\n",
    "long attribute chain": "x = a" + ".b" * 200_000 + "\n",
    "long call chain": "x = f" + "()" * 200_000 + "\n",
    "long sum": "x = " + "+".join(["1"] * 200_000) + "\n",
}


@pytest.mark.parametrize("source", HOSTILE_SOURCES.values(), ids=HOSTILE_SOURCES.keys())
def test_a_handler_file_the_parser_gives_up_on_declares_nothing_and_the_jobs_page_still_lists_it(
    tmp_path: Path, source: str
) -> None:
    # The attacker uploads a platform job whose app.py the worker's AST reader cannot parse: the
    # reader must say "declares nothing" (as for any file that does not parse), not raise into the
    # worker or into the Python jobs page, which describes every upload for every viewer.
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "app.py").write_text("from digitalhub_runtime_python import handler\n" + source)
    (folder / "job.json").write_text(json.dumps({"jobId": "bomb", "function": {"handler": "main"}}))
    assert decorator_outputs(folder / "app.py", "main") is None
    assert project_dataitems(folder / "app.py") == []
    assert declared_outputs(PythonJob.load(folder)) == []
