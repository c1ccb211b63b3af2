"""Data items: a handler's inputs staged before its run, its outputs published after it.

The platform's run takes ``inputs`` (references to data items) besides ``parameters`` and stores what
the handler returns: a DataFrame as a table data item, a file as an artifact, plain values as
results. :class:`DataRun` does the worker's half for one run of a function job:

1. :meth:`DataRun.check`, before anything is built: every input resolved (a URI, a job-folder path,
   an asset's latest event, an upstream output's exact version) and known to exist;
2. :meth:`DataRun.stage`, in the run's private folder: the inputs copied (read-only), the data file
   and the stdlib-only data module written for the bootstrap;
3. :meth:`DataRun.publish`, after the handler returned: the outputs the job's process wrote are
   copied to ``{data_store}/{dataitem|artifact}/{name}/{version}/`` (or their own ``uri``).

Nothing here imports Airflow at module level: ``ObjectStoragePath`` is imported when a URI is
opened. The Airflow side (assets, events, XCom, OpenLineage) is in
:mod:`airflow_python_exec.operators.data_items`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.handlers import DATA_FILE_ENV, DATA_MODULE, DATA_MODULE_NAME, PLATFORM_FOLDER, PLATFORM_MODULE
from airflow_python_exec.handlers.declared import decorator_outputs, handler_file, project_dataitems
from airflow_python_exec.handlers.inputs import AssetResolver, ResolvedInput, resolve_inputs, stage
from airflow_python_exec.handlers.outputs import Outputs, publish
from airflow_python_exec.handlers.store import VERSION, data_store_uri, project_store, version_records
from airflow_python_exec.models import PythonJob
from airflow_python_exec.models.data_item_specs import (
    NAME,
    InputSpec,
    OutputSpec,
    parse_inputs,
    parse_outputs,
    public_uri,
)
from airflow_python_exec.redaction import Redactor


class DataRun:
    """The data items of one run of a function job.

    :param job: the function job.
    :param data_store: the data store (a URI or absolute folder; ``None``: the default).
    :param resolve_asset: an asset's latest event (Airflow); ``None`` outside Airflow.
    :param run_id: ``run.run_id`` in the handler.
    :param hidden: folders a sandboxed job may not see (local inputs there are refused).
    :raises JobConfigError: a bad ``data_store``.
    """

    def __init__(
        self,
        job: PythonJob,
        *,
        data_store: str | None = None,
        resolve_asset: AssetResolver | None = None,
        run_id: str | None = None,
        hidden: Iterable[str] = (),
    ) -> None:
        assert job.function is not None
        self.job = job
        try:
            self.data_store = data_store_uri(data_store)
        except ValueError as exc:
            raise JobConfigError(str(exc)) from None
        self.inputs: dict[str, InputSpec] = parse_inputs(job.function.inputs)
        self.outputs: tuple[OutputSpec, ...] = parse_outputs(job.function.outputs)
        self.resolve_asset = resolve_asset
        self.run_id = run_id
        self.hidden = tuple(hidden)
        self.resolved: list[ResolvedInput] = []
        self.project = job.project
        #: Where this job's outputs go: the data store, or its project's level in it.
        self.store = project_store(self.data_store, job.project)
        self.project_items: list[ResolvedInput] = []

    def read_handler_file(self, root: Path, main_file: Path | None) -> None:
        """Read what the handler's own file declares (once its source is resolved, before the start):
        a ``@handler(outputs=[...])`` when ``function.outputs`` is empty, and the project's data items
        it names (``project.get_dataitem("x")``), whose latest versions are copied in.

        :raises JobConfigError: a decorator's outputs that break the output rules.
        """
        assert self.job.function is not None
        path = handler_file(root, self.job.function.handler, main_file)
        if not self.outputs:
            found = decorator_outputs(path, self.job.function.handler)
            try:
                self.outputs = parse_outputs(found) if found else ()
            except ValueError as exc:
                raise JobConfigError(f"@handler of {self.job.function.handler}: {exc}") from None
        self.project_items = [
            item for name in project_dataitems(path) if NAME.match(name) and (item := self._latest(name)) is not None
        ]

    def _latest(self, name: str) -> ResolvedInput | None:
        """The latest version of the project's data item ``name`` (a table, else an artifact), or ``None``."""
        for group in ("dataitem", "artifact"):
            records = [r for r in version_records(self.store, group, name) if _well_formed(r)]
            if records:
                latest = max(records, key=lambda r: str(r.get("version")))
                version, file_name = str(latest["version"]), PurePosixPath(latest["uri"]).name
                uri = f"{self.store}/{group}/{name}/{version}/{file_name}"
                local = Path(uri[len("file://") :]) if uri.startswith("file://") else None
                fmt = latest.get("format") if latest.get("format") in ("parquet", "csv") else None
                return ResolvedInput(f"project.{name}", name, uri, public_uri(uri), fmt, dict(latest), local)
        return None

    def check(self) -> list[ResolvedInput]:
        """Resolve the inputs and check they exist (before anything is built or started).

        :raises JobConfigError: ``input 'raw': <uri> does not exist``, ``input 'raw': asset 'x' has no event``.
        """
        store_folder = [self.data_store[len("file://") :]] if self.data_store.startswith("file://") else []
        self.resolved = resolve_inputs(self.inputs, self.job.folder, self.resolve_asset, self.hidden, store_folder)
        return self.resolved

    def stage(self, run_folder: Path) -> dict[str, str]:
        """Copy the inputs under ``run_folder/inputs``, write the data file and the data module.

        :returns: the variables to add to the run's environment (``PYTHON_EXEC_DATA_FILE``).
        """
        inputs_folder, outputs_folder = self.inputs_folder(run_folder), run_folder / "outputs"
        inputs_folder.mkdir()
        outputs_folder.mkdir()
        staged = stage(self.resolved, inputs_folder)
        for argument, item in staged.items():
            spec = self.inputs.get(argument)
            if spec is not None and spec.asset is None and spec.pinned is None:  # a plain URI: its file name
                item["name"] = PurePosixPath(item["uri"].rstrip("/")).name or argument
        dataitems = {
            i.name: v
            for i, v in zip(self.project_items, stage(self.project_items, inputs_folder).values(), strict=True)
        }
        data_file = run_folder / "data.json"
        data_file.write_text(
            json.dumps(
                {
                    "inputs": staged,
                    "outputs": [o.for_job() for o in self.outputs],
                    "folder": str(outputs_folder),
                    "run_id": self.run_id,
                    "project": {"name": self.project or self.job.job_id, "dataitems": dataitems},
                },
                default=str,
            ),
            encoding="utf-8",
        )
        shutil.copyfile(DATA_MODULE, run_folder / DATA_MODULE_NAME)
        (run_folder / PLATFORM_FOLDER).mkdir()
        shutil.copyfile(PLATFORM_MODULE, run_folder / PLATFORM_FOLDER / "digitalhub_runtime_python.py")
        return {DATA_FILE_ENV: str(data_file)}

    @staticmethod
    def inputs_folder(run_folder: Path) -> Path:
        """Where the inputs are copied (mounted read-only in the sandbox)."""
        return run_folder / "inputs"

    def publish(
        self,
        run_folder: Path,
        value: Any,
        *,
        max_bytes: int,
        max_output_bytes: int | None = None,
        redact: Redactor | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> Outputs:
        """Publish what the handler returned (call only after it returned).

        :param value: the run's result, read and masked already: its ``results`` are the named results.
        :param redact: the run's secrets (see :func:`~airflow_python_exec.handlers.outputs.publish`).
        :raises PublishError: an output cannot be published.
        """
        outputs = publish(
            run_folder / "outputs",
            self.outputs,
            self.store,
            max_bytes=max_bytes,
            max_output_bytes=max_output_bytes,
            redact=redact,
            on_line=on_line,
            project=self.project,
            about={"job_id": self.job.job_id, "inputs": self.lineage()},
        )
        if not outputs.items and not outputs.declared:
            return outputs
        results = value.get("results") if isinstance(value, Mapping) else None
        return replace(outputs, results=dict(results) if isinstance(results, Mapping) else {})

    def lineage(self) -> dict[str, str]:
        """argument -> the URI read (the lineage recorded in each output's event)."""
        return {i.argument: i.public for i in [*self.resolved, *self.project_items]}

    def result(self, value: Any, outputs: Outputs) -> Any:
        """The run's result with each output's file replaced by its published URI: ``{"outputs":
        {name: uri}, "results": {name: value}}`` when anything was declared or stored, else ``value``."""
        if not outputs.items and not outputs.declared:
            return value
        return {"outputs": {p.name: p.uri for p in outputs.items}, "results": dict(outputs.results)}


def _well_formed(record: Mapping[str, Any]) -> bool:
    """A version record the worker may follow: its version and file name are what the worker writes
    (a record planted in the store cannot point a copy elsewhere with ``..`` or a path)."""
    uri, version = record.get("uri"), record.get("version")
    if not isinstance(uri, str) or not isinstance(version, str) or not VERSION.match(version):
        return False
    return PurePosixPath(uri).name not in ("", ".", "..") and f"/{version}/" in uri


__all__ = ["AssetResolver", "DataRun"]
