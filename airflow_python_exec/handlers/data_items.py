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
from pathlib import Path
from typing import Any

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.handlers import DATA_FILE_ENV, DATA_MODULE, DATA_MODULE_NAME
from airflow_python_exec.handlers.inputs import DEFAULT_MAX_BYTES, AssetResolver, ResolvedInput, resolve_inputs, stage
from airflow_python_exec.handlers.outputs import Outputs, check_outputs, publish
from airflow_python_exec.handlers.store import data_store_uri
from airflow_python_exec.models import PythonJob
from airflow_python_exec.models.data_item_specs import InputSpec, OutputSpec, parse_inputs, parse_outputs
from airflow_python_exec.models.reach import Reach, reach_for
from airflow_python_exec.settings import EngineSettings


class DataRun:
    """The data items of one run of a function job.

    :param job: the function job.
    :param data_store: the data store (a URI or absolute folder; ``None``: the default).
    :param resolve_asset: an asset's latest event (Airflow); ``None`` outside Airflow.
    :param run_id: ``run.run_id`` in the handler.
    :param reach: what the job may name (:func:`~airflow_python_exec.models.reach.reach_for`);
        default: its folder and the data store, with the default settings.
    :param max_bytes: the most bytes an input or output may have (``max_data_bytes``).
    :raises JobConfigError: a bad ``data_store``.
    """

    def __init__(
        self,
        job: PythonJob,
        *,
        data_store: str | None = None,
        resolve_asset: AssetResolver | None = None,
        run_id: str | None = None,
        reach: Reach | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
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
        self.reach = reach or reach_for(EngineSettings(), job.folder, self.data_store)
        self.max_bytes = max_bytes
        self.resolved: list[ResolvedInput] = []

    def check(self) -> list[ResolvedInput]:
        """Resolve the inputs and check they exist, and check the outputs' own ``uri`` (before
        anything is built or started), all under the Reach rule.

        :raises JobConfigError: ``input 'raw': <uri> does not exist``, ``input 'raw': asset 'x' has no
            event``, a place the job may not name.
        """
        check_outputs(self.outputs, self.reach)
        self.resolved = resolve_inputs(self.inputs, self.job.folder, self.resolve_asset, self.reach)
        return self.resolved

    def stage(self, run_folder: Path) -> dict[str, str]:
        """Copy the inputs under ``run_folder/inputs``, write the data file and the data module.

        :returns: the variables to add to the run's environment (``PYTHON_EXEC_DATA_FILE``).
        """
        inputs_folder, outputs_folder = self.inputs_folder(run_folder), run_folder / "outputs"
        inputs_folder.mkdir()
        outputs_folder.mkdir()
        staged = stage(self.resolved, inputs_folder, self.reach, self.max_bytes)
        data_file = run_folder / "data.json"
        data_file.write_text(
            json.dumps(
                {
                    "inputs": staged,
                    "outputs": [o.for_job() for o in self.outputs],
                    "folder": str(outputs_folder),
                    "run_id": self.run_id,
                },
                default=str,
            ),
            encoding="utf-8",
        )
        shutil.copyfile(DATA_MODULE, run_folder / DATA_MODULE_NAME)
        return {DATA_FILE_ENV: str(data_file)}

    @staticmethod
    def inputs_folder(run_folder: Path) -> Path:
        """Where the inputs are copied (mounted read-only in the sandbox)."""
        return run_folder / "inputs"

    def publish(
        self,
        run_folder: Path,
        *,
        max_bytes: int,
        secrets: Iterable[str] = (),
        on_line: Callable[[str], None] | None = None,
    ) -> Outputs:
        """Publish what the handler returned (call only after it returned).

        :raises PublishError: an output cannot be published.
        """
        return publish(
            run_folder / "outputs",
            self.outputs,
            self.data_store,
            self.reach,
            max_bytes=max_bytes,
            max_data_bytes=self.max_bytes,
            secrets=secrets,
            on_line=on_line,
        )

    def lineage(self) -> dict[str, str]:
        """argument -> the URI read (the lineage recorded in each output's event)."""
        return {i.argument: i.public for i in self.resolved}

    def result(self, value: Any, outputs: Outputs) -> Any:
        """The run's result with each output's file replaced by its published URI: ``{"outputs":
        {name: uri}, "results": {name: value}}`` when anything was declared or stored, else ``value``."""
        if not outputs.items and not outputs.declared:
            return value
        results = value.get("results", {}) if isinstance(value, Mapping) else {}
        return {"outputs": {p.name: p.uri for p in outputs.items}, "results": results}


__all__ = ["AssetResolver", "DataRun"]
