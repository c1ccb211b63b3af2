"""Data items on the job's side: ``DataItem`` inputs, the ``run`` argument, and the outputs a handler
returns, written into the run's private folder for the worker to publish (DESIGN.md, "Data items").

Standard library only, like the bootstrap that loads it: it runs in the job's environment, which has
neither Airflow nor this package (pandas, when a handler uses it, comes from the job's own
environment). The service copies this file beside the bootstrap; the bootstrap loads it by path
when ``PYTHON_EXEC_DATA_FILE`` names the run's data file, a JSON object:

- ``inputs``: argument name -> ``{"name", "uri", "path", "extra", "format"}`` (``path``: the local
  copy the worker made before the start);
- ``outputs``: the declared outputs, ``[{"name", "kind", "format"}]`` (``kind``: ``table``,
  ``artifact``, ``result`` or ``None``: taken from the value; ``format``: ``parquet`` or ``csv``);
- ``project``: ``{"name", "dataitems": {name: <an input's fields>}}``, the reserved ``project``
  argument and the latest versions it may return (staged by the worker like inputs);
- ``folder``: where the outputs and :data:`MANIFEST` are written;
- ``run_id``: the run's id (``run.run_id``).

The manifest is ``{"outputs": [{"name", "kind", "format", "file", "rows", "schema"}], "metrics":
{key: value}, "declared": bool}``; the named results travel in the run's result only. The worker
trusts none of it beyond what it checks itself (names, files opened without following links).
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shutil
import sys

DATA_FILE_ENV = "PYTHON_EXEC_DATA_FILE"
MANIFEST = "manifest.json"
PREFIX = "[python_exec]"
TABLE, ARTIFACT, RESULT = "table", "artifact", "result"


class NotStorable(Exception):
    """A returned value that no output kind can hold (the run fails, nothing is published)."""


class DataItem:
    """An input of the handler, as the platform's ``Dataitem``: a local copy made before the start.

    :ivar name: the data item's own name: the asset's (or output's) name, or the file name of a plain
        URI, extension kept (the platform's data item name; never the argument's name).
    :ivar uri: where it was read from (no credentials): this version's URI.
    :ivar path: the local copy, a :class:`pathlib.Path` (``open(item)`` and ``os.fspath(item)`` work).
    :ivar extra: the asset event's ``extra`` (``{}`` for a plain URI).
    :ivar format: ``parquet``, ``csv`` or ``None`` (then taken from the extension).
    """

    def __init__(self, name: str, uri: str, path: str, extra: dict | None = None, format: str | None = None) -> None:
        self.name, self.uri, self.path = name, uri, pathlib.Path(path)
        self.extra = dict(extra or {})
        self.format = format

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"DataItem(name={self.name!r}, uri={self.uri!r}, path={str(self.path)!r})"

    def as_df(self, file_format: str | None = None, **read_kwargs):
        """The item as a pandas DataFrame (pandas from the job's environment).

        :param file_format: ``parquet`` or ``csv``; default: the input's ``format``, else the extension.
        :raises ValueError: a format that is neither.
        """
        import pandas as pd

        fmt = (file_format or self.format or _extension_format(self.path) or "").lower()
        if fmt == "parquet":
            return pd.read_parquet(self.path, **read_kwargs)
        if fmt == "csv":
            return pd.read_csv(self.path, **read_kwargs)
        raise ValueError(
            f"data item {self.name!r}: cannot tell its format from {self.path.name}; pass file_format='csv'"
        )

    def download(self, destination: str | None = None, overwrite: bool = False) -> str:
        """Copy the item to ``destination`` (a file or an existing folder); return the path written.

        Without ``destination``, the local copy's own path (it is already on this machine). Into a
        folder, the copy keeps the item's file name and extension.

        :raises FileExistsError: the target exists and ``overwrite`` is false.
        """
        if destination is None:
            return str(self.path)
        target = pathlib.Path(destination)
        if target.is_dir():
            target = target / self.path.name
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True")
        if self.path.is_dir():
            shutil.copytree(self.path, target, dirs_exist_ok=overwrite)
        else:
            shutil.copyfile(self.path, target)
        return str(target)

    def as_file(self) -> list[str]:
        """The local file(s) of the item: ``[path]``, or every file of a folder, sorted."""
        if self.path.is_dir():
            return sorted(str(p) for p in self.path.rglob("*") if p.is_file())
        return [str(self.path)]


class Run:
    """The reserved ``run`` argument: ``run.run_id`` and ``run.log_metric`` (as the platform's run)."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.metrics: dict = {}

    def log_metric(self, key: str, value, single_value: bool = False) -> None:
        """Record a metric: appended to a list under ``key`` unless ``single_value`` (then replaced)."""
        json.dumps(value, allow_nan=False)  # a metric is a JSON value: fail here, at the caller's line
        if single_value:
            self.metrics[key] = value
        else:
            previous = self.metrics.get(key)
            self.metrics[key] = [*previous, value] if isinstance(previous, list) else [value]


class Project:
    """The reserved ``project`` argument, as the platform's project: ``.name``, ``get_dataitem(name)``
    and ``log_metric`` (the run's metrics).

    :ivar name: ``job.json``'s ``project``, else the job's id.
    """

    def __init__(self, name: str, dataitems: dict, run: Run) -> None:
        self.name, self._dataitems, self._run = name, dataitems, run

    def get_dataitem(self, name: str) -> DataItem:
        """The latest version of the project's data item ``name`` (a :class:`DataItem`).

        The worker copies it in before the run starts: it finds the names the handler's code passes
        to ``get_dataitem`` as literal strings.

        :raises KeyError: a data item with no version, or one the worker could not see named.
        """
        found = self._dataitems.get(name)
        if found is None:
            raise KeyError(
                f"project {self.name!r} has no data item {name!r} for this run: it has no version yet, or the "
                "handler does not name it as a literal string; declare it in function.inputs instead"
            )
        return DataItem(found["name"], found["uri"], found["path"], found.get("extra"), found.get("format"))

    def log_metric(self, key: str, value, single_value: bool = False) -> None:
        """Record a metric of the run (see :meth:`Run.log_metric`)."""
        self._run.log_metric(key, value, single_value)

    def __repr__(self) -> str:
        return f"Project(name={self.name!r})"


class Data:
    """One run's data file: the inputs to pass, the outputs to write."""

    NotStorable = NotStorable

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        self.inputs = {
            arg: DataItem(i["name"], i["uri"], i["path"], i.get("extra"), i.get("format"))
            for arg, i in spec.get("inputs", {}).items()
        }
        self.outputs: list[dict] = list(spec.get("outputs", []))
        self.folder = pathlib.Path(spec["folder"])
        self.run = Run(spec.get("run_id"))
        project = spec.get("project") or {}
        self.project = Project(str(project.get("name") or ""), dict(project.get("dataitems") or {}), self.run)

    def declare(self, outputs) -> None:
        """Adopt the outputs a ``@handler(outputs=[...])`` decorator declared, unless the job declared
        its own (``function.outputs`` wins, as on the platform's run)."""
        if not self.outputs and outputs:
            self.outputs = [o if isinstance(o, dict) else {"name": str(o), "kind": None} for o in outputs]

    def check_engines(self) -> str | None:
        """A one-line reason the outputs cannot be written, found before the handler runs: a table
        output stored as parquet in an environment without a parquet engine (pyarrow or fastparquet).
        An output whose kind comes from the value counts when pandas is installed (it may be a table)."""
        import importlib.util

        def found(module: str) -> bool:
            try:
                return importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                return False

        for spec in self.outputs:
            kind, fmt = spec.get("kind"), spec.get("format") or "parquet"
            if fmt != "parquet" or kind not in (TABLE, None) or (kind is None and not found("pandas")):
                continue
            if not found("pyarrow") and not found("fastparquet"):
                return (
                    f"output {spec['name']!r} is stored as parquet, and the job's environment has no parquet "
                    'engine: add pyarrow to pythonEnv.requirements (or declare the output with "format": "csv")'
                )
        return None

    def store(self, value):
        """Write the handler's return ``value`` as outputs; return the run's JSON result.

        With outputs declared (or anything stored), the result is ``{"outputs": {name: file},
        "results": {name: value}}`` (the worker replaces files with the URIs it publishes), else the
        value itself.

        :raises NotStorable: one line naming the output and the value's type.
        """
        declared = bool(self.outputs)
        if declared:
            values = (
                list(value)
                if isinstance(value, tuple) or (isinstance(value, list) and len(self.outputs) > 1)
                else [value]
            )
            if len(values) > len(self.outputs):
                extra = ", ".join(f"output_{i}" for i in range(len(self.outputs), len(values)))
                warn(
                    f"{len(values)} values for {len(self.outputs)} output(s): the extra value"
                    f"{'s are' if len(values) - len(self.outputs) > 1 else ' is'} named {extra}"
                )
            pairs = [
                (self.outputs[i] if i < len(self.outputs) else {"name": f"output_{i}"}, v) for i, v in enumerate(values)
            ]
        elif isinstance(value, tuple) and any(_kind_of(v) != RESULT for v in value):
            pairs = [({"name": f"output_{i}"}, v) for i, v in enumerate(value)]
        elif _kind_of(value) != RESULT:
            pairs = [({"name": "output_0"}, value)]
        else:
            pairs = []
        if not declared:
            for spec, v in pairs:
                warn(
                    f"the handler returned a {type(v).__name__}, stored as {spec['name']}; "
                    "declare function.outputs to name it and publish it as an asset"
                )
        if not pairs:
            self._manifest([], declared=False)
            return value
        outputs, results = [], {}
        for spec, v in pairs:
            if v is None:
                continue
            kind = spec.get("kind") or _kind_of(v)
            name = spec["name"]
            if kind == RESULT:
                if _kind_of(v) != RESULT:
                    raise NotStorable(
                        f"output {name!r}: a value of type {type(v).__name__} cannot be stored as a result; "
                        'declare it with kind "table" or "artifact"'
                    )
                results[name] = _json(name, v)
            elif kind == TABLE and _kind_of(v) == TABLE:
                outputs.append(self._table(name, spec.get("format") or "parquet", v))
            elif kind == ARTIFACT and _kind_of(v) == ARTIFACT:
                outputs.append(self._artifact(name, pathlib.Path(v)))
            else:
                raise NotStorable(f"output {name!r}: a value of type {type(v).__name__} cannot be stored as {kind}")
        self._manifest(outputs, declared)
        return {"outputs": {o["name"]: o["file"] for o in outputs}, "results": results}

    def _table(self, name: str, fmt: str, frame) -> dict:
        file = f"{name}.{fmt}"
        target = self.folder / file
        if fmt == "csv":
            frame.to_csv(target, index=False)
        else:
            frame.to_parquet(target, index=False)  # as the CSV writer and the platform: no __index_level_0__
        return {"name": name, "kind": TABLE, "format": fmt, "file": file, "rows": len(frame), "schema": schema(frame)}

    def _artifact(self, name: str, source: pathlib.Path) -> dict:
        """Copy a file, or a folder whole (a model, as the platform logs one), for the worker."""
        folder = self.folder / name
        if source.is_dir() and not source.is_symlink():
            folder.mkdir()
            shutil.copytree(source, folder / source.resolve().name, symlinks=True)
            file_name = source.resolve().name
            return {"name": name, "kind": ARTIFACT, "format": "folder", "file": f"{name}/{file_name}"}
        if not source.is_file():
            raise NotStorable(f"output {name!r}: {source} is not a file or a folder; return the Path of one")
        folder.mkdir()
        shutil.copyfile(source, folder / source.name)
        return {
            "name": name,
            "kind": ARTIFACT,
            "format": source.suffix.lstrip(".") or None,
            "file": f"{name}/{source.name}",
        }

    def _manifest(self, outputs: list, declared: bool) -> None:
        # The named results travel in the result file only (the run's return value).
        text = json.dumps(
            {"outputs": outputs, "metrics": self.run.metrics, "declared": declared},
            allow_nan=False,
            default=str,
        )
        with open(self.folder / MANIFEST, "w", encoding="utf-8") as f:
            f.write(text)


def _kind_of(value) -> str:
    """``table`` for a DataFrame (anything with ``to_parquet``/``to_csv``), ``artifact`` for a Path,
    else ``result``."""
    if hasattr(value, "to_parquet") or (hasattr(value, "to_csv") and hasattr(value, "columns")):
        return TABLE
    if isinstance(value, pathlib.PurePath):
        return ARTIFACT
    return RESULT


def _json(name: str, value):
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise NotStorable(f"output {name!r}: a value of type {type(value).__name__} cannot be stored") from None
    return value


def schema(frame) -> dict:
    """A Table Schema of a DataFrame: ``{"fields": [{"name", "type"}]}`` (``string``, ``integer``,
    ``number``, ``boolean``, ``datetime``, ``date``, ``any``)."""
    fields = []
    for column in frame.columns:
        fields.append({"name": str(column), "type": _field_type(frame[column])})
    return {"fields": fields}


def _field_type(series) -> str:
    kind = getattr(series.dtype, "kind", "O")
    simple = {"i": "integer", "u": "integer", "f": "number", "b": "boolean", "M": "datetime", "U": "string"}
    if kind in simple:
        return simple[kind]
    if str(series.dtype) in ("string", "str", "category"):
        return "string"
    sample = next((v for v in series if v is not None and v == v), None)
    if isinstance(sample, datetime.datetime):
        return "datetime"
    if isinstance(sample, datetime.date):
        return "date"
    if isinstance(sample, str):
        return "string"
    if isinstance(sample, bool):
        return "boolean"
    return "any"


def _extension_format(path: pathlib.Path) -> str | None:
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in ("parquet", "csv") else None


def warn(message: str) -> None:
    print(f"{PREFIX} warning: {message}", file=sys.stderr, flush=True)


__all__ = ["DATA_FILE_ENV", "Data", "DataItem", "NotStorable", "Project", "Run", "schema"]
