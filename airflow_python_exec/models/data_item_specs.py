"""``function.inputs`` and ``function.outputs`` of ``job.json``, checked (DESIGN.md, "Data items").

An output's kind, when not declared, is the returned value's (a DataFrame is a table, a ``Path``
an artifact, any JSON value a result). An input is a URI (any scheme ``ObjectStoragePath`` opens; a
relative path is a file of the job folder), a spec ``{"uri" | "asset", "format"}``, or an upstream
output reference (the XCom of an output: ``{"name", "uri", "kind", ...}``, which pins that exact
version). An output is a name or a
spec ``{"name", "kind", "format", "uri"}``. Every refusal is a ``ValueError`` of one line that
starts with ``inputs.<name>`` or ``outputs[<i>]`` (pydantic turns it into the job's one-line error).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_python_exec.errors import PythonExecError

TABLE, ARTIFACT, RESULT = "table", "artifact", "result"
KINDS = (TABLE, ARTIFACT, RESULT)
FORMATS = ("parquet", "csv")
#: An output's name is an asset name and a path component: letters, digits, ``.``, ``_``, ``-``.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
#: XCom keys the operator pushes itself: an output of that name would overwrite them.
RESERVED_NAMES = ("return_value", "metrics")
#: Argument names the bootstrap gives itself.
RESERVED_ARGUMENTS = ("context", "run", "project")
OUTPUT_KEYS = ("name", "kind", "format", "uri")
INPUT_KEYS = ("uri", "asset", "format")
#: The keys of an output's XCom; a dict with ``kind`` and ``uri`` is an upstream output reference.
REFERENCE_KEYS = ("name", "uri", "kind", "format", "rows", "schema", "asset", "size", "version")


@dataclass(frozen=True)
class OutputSpec:
    """One declared output.

    :ivar name: the output's (and its asset's) name.
    :ivar kind: ``table`` (a DataFrame: a data item), ``artifact`` (a file or a folder), ``result`` (a
        JSON value), or ``None``: taken from the returned value, as the data platform does.
    :ivar format: ``parquet`` or ``csv`` for a table.
    :ivar uri: its own location (any ``ObjectStoragePath`` URI), or ``None``: under ``data_store``.
    """

    name: str
    kind: str | None = None
    format: str = "parquet"
    uri: str | None = None

    @property
    def stored(self) -> bool:
        """True unless a result (a table or an artifact: an asset, a file in storage; an output whose
        kind comes from the value may be either, so it is declared as an asset too)."""
        return self.kind != RESULT

    @property
    def group(self) -> str:
        """The asset group and the data store folder: ``dataitem`` or ``artifact``."""
        return "artifact" if self.kind == ARTIFACT else "dataitem"

    def for_job(self) -> dict[str, Any]:
        """What the job's process needs to write it."""
        return {"name": self.name, "kind": self.kind, "format": self.format}


@dataclass(frozen=True)
class InputSpec:
    """One input: exactly one of ``uri`` and ``asset``.

    :ivar name: the handler's argument.
    :ivar uri: a URI, or a path relative to the job folder.
    :ivar asset: an Airflow asset's name: its latest event's ``extra["uri"]`` is read.
    :ivar format: ``parquet``, ``csv`` or ``None`` (from the extension).
    :ivar pinned: an upstream output reference (its XCom), whose ``uri`` is that exact version.
    """

    name: str
    uri: str | None = None
    asset: str | None = None
    format: str | None = None
    pinned: Mapping[str, Any] | None = None


def parse_outputs(value: Any) -> tuple[OutputSpec, ...]:
    """Check ``function.outputs``.

    :raises ValueError: ``outputs[0]: unknown key 'fromat' (did you mean 'format'?)`` and the like.
    """
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise ValueError(f'outputs must be a list of names or specs, like ["world-cities"], not {type(value).__name__}')
    specs: list[OutputSpec] = []
    for i, item in enumerate(value):
        where = f"outputs[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise ValueError(f'{where} must be a name or an object like {{"name": "x"}}, not {type(item).__name__}')
        _known_keys(item, OUTPUT_KEYS, where)
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(
                f"{where}: name {name!r} is not a data item name; use letters, digits, '.', '_' and '-' "
                "(128 at most), e.g. world-cities"
            )
        if name in RESERVED_NAMES:
            raise ValueError(f"{where}: name {name!r} is an XCom key of the task itself; choose another name")
        if any(s.name == name for s in specs):
            raise ValueError(f"{where}: name {name!r} is declared twice; give each output its own name")
        kind = item.get("kind")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        fmt = item.get("format", "parquet")
        if fmt not in FORMATS:
            raise ValueError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS)}")
        uri = item.get("uri")
        if uri is not None and (not isinstance(uri, str) or not uri.strip() or "://" not in uri):
            raise ValueError(f"{where}: uri {uri!r} is not a URI; write it like s3://conn@bucket/path/x.parquet")
        if uri is not None:
            _parsed(uri, f"{where}.uri")
        if uri is not None and kind == RESULT:
            raise ValueError(f"{where}: a result is an XCom value and has no uri; remove uri or change kind")
        specs.append(OutputSpec(name, kind, fmt, uri))
    return tuple(specs)


def parse_inputs(value: Any) -> dict[str, InputSpec]:
    """Check ``function.inputs`` (argument name -> URI, spec or upstream output reference).

    :raises ValueError: one line starting with ``inputs.<name>``.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f'inputs must be an object like {{"raw": "data/raw.csv"}}, not {type(value).__name__}')
    specs: dict[str, InputSpec] = {}
    for name, item in value.items():
        where = f"inputs.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{where}: {name!r} is not a Python argument name; name the handler's argument")
        if name in RESERVED_ARGUMENTS:
            raise ValueError(f"{where}: {name!r} is reserved for the run's {name}; choose another argument name")
        specs[name] = parse_input(name, item)
    return specs


def parse_input(name: str, item: Any) -> InputSpec:
    """One input (see :func:`parse_inputs`)."""
    where = f"inputs.{name}"
    if isinstance(item, str):
        return InputSpec(name, uri=_uri(item, where))
    if not isinstance(item, Mapping):
        raise ValueError(
            f"{where} must be a URI or an object with uri or asset, not {type(item).__name__}; "
            "an Asset or ObjectStoragePath is accepted by the operator"
        )
    if "kind" in item and "uri" in item:  # an upstream output's XCom: that exact version
        _known_keys(item, REFERENCE_KEYS, where)
        fmt = item.get("format")
        return InputSpec(name, uri=_uri(item["uri"], where), format=fmt if fmt in FORMATS else None, pinned=dict(item))
    _known_keys(item, INPUT_KEYS, where)
    uri, asset, fmt = item.get("uri"), item.get("asset"), item.get("format")
    if (uri is None) == (asset is None):
        raise ValueError(f"{where}: give one of uri and asset")
    if asset is not None and (not isinstance(asset, str) or not asset.strip()):
        raise ValueError(f"{where}: asset {asset!r} is not an asset name")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    return InputSpec(name, uri=_uri(uri, where) if uri is not None else None, asset=asset, format=fmt)


def _uri(uri: Any, where: str) -> str:
    if not isinstance(uri, str) or not uri.strip() or "\x00" in uri:
        raise ValueError(f"{where}: {uri!r} is not a URI or a path of the job folder")
    _parsed(uri, where)
    return uri.strip()


def _parsed(uri: str, where: str) -> None:
    """Refuse early what the Reach parser refuses whatever the settings (a huge value, a control
    character, a password in a URL); where it may be read or written is decided at run time."""
    from airflow_python_exec.models.reach import parse_location

    try:
        parse_location(uri, "/", where)
    except PythonExecError as exc:
        raise ValueError(str(exc)) from None


def _known_keys(item: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in item:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; use {', '.join(known)}"
            raise ValueError(f"{where}: unknown key {key!r}{hint}")


def public_uri(uri: str) -> str:
    """``uri`` without user info (a connection id or credentials): ``s3://conn@bucket/x`` -> ``s3://bucket/x``."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
