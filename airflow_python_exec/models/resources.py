"""A job's resource limits: ``resources`` in ``job.json``, the operator's ``resources=``, the CLI's
``--memory --cpu --pids --tmp --timeout`` and ``[python_exec] default_resources`` / ``max_resources``
(DESIGN.md, "Resource limits").

Pure parsing, no I/O. Quantities use Kubernetes' syntax (``512Mi``, ``2Gi``, ``1.5``, ``500m``,
``1e9``); durations are ``30s``, ``10m``, ``1h``, ``1h30m`` or a number of seconds. Enforcement is
:mod:`airflow_python_exec.isolation.limits`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.isolation.limits import show_bytes

from .rules import near_miss

#: The keys of ``resources``, in the order they are shown.
KEYS = ("memory", "cpu", "pids", "tmp", "timeout")
#: Kubernetes quantity suffixes (k8s.io/apimachinery resource.Quantity): binary, decimal, milli.
_SUFFIXES: dict[str, int | Decimal] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "m": Decimal("0.001"),
    "": 1,
}
_QUANTITY = re.compile(
    r"\A(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?P<exp>[+-]?[0-9]{1,3})|(?P<suffix>[KMGTPE]i|[kMGTPEm]?))\Z"
)
_DURATION_PART = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Smallest memory a run is given: below this not even the interpreter starts.
MIN_MEMORY = 16 * 2**20
#: Most seconds a timeout may say (a year); anything larger is a typo.
MAX_TIMEOUT_S = 366 * 86400.0
_EXAMPLE = '{"memory": "512Mi", "cpu": 1.5, "pids": 256, "tmp": "1Gi", "timeout": "30m"}'


class Resources(BaseModel):
    """Resource limits of one run; ``None``: that resource is not limited.

    :ivar memory: bytes of memory for the script and everything it starts.
    :ivar cpu: cores (``0.5``: half of one core's time).
    :ivar pids: processes and threads alive at once.
    :ivar tmp: bytes of the private ``/tmp`` (the sandbox), or of any one file written (no sandbox).
    :ivar timeout: seconds of wall time before the run is ended.
    """

    model_config = ConfigDict(frozen=True)

    memory: int | None = None
    cpu: float | None = None
    pids: int | None = None
    tmp: int | None = None
    timeout: float | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, key) is not None for key in KEYS)

    def describe(self) -> str:
        """The limits in words, e.g. ``memory 512 MiB, cpu 1.5, pids 256, tmp 1 GiB``; ``no limits``."""
        parts = [f"{key} {show(key, getattr(self, key))}" for key in KEYS if getattr(self, key) is not None]
        return ", ".join(parts) or "no limits"

    def facts(self) -> dict[str, Any]:
        """The limits as JSON values (run metadata): ``memory_bytes``, ``cpu``, ``pids``, ``tmp_bytes``,
        ``timeout_s``; limits not set are left out."""
        names = {"memory": "memory_bytes", "tmp": "tmp_bytes", "timeout": "timeout_s"}
        return {names.get(k, k): getattr(self, k) for k in KEYS if getattr(self, k) is not None}

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> Resources:
        """The limits back from :meth:`facts` (a run's metadata).

        :raises pydantic.ValidationError: values of the wrong type."""
        names = {"memory": "memory_bytes", "tmp": "tmp_bytes", "timeout": "timeout_s"}
        return cls(**{k: facts.get(names.get(k, k)) for k in KEYS})

    def merged(self, over: Resources | None) -> Resources:
        """These limits with every value set in ``over`` replacing the same key."""
        if over is None:
            return self
        return Resources(**{k: getattr(over, k) if getattr(over, k) is not None else getattr(self, k) for k in KEYS})


def show(key: str, value: float | None) -> str:
    """One limit's value for people: ``512 MiB``, ``1.5``, ``256``, ``30 min``."""
    if value is None:
        return "unset"
    if key in ("memory", "tmp"):
        return show_bytes(int(value))
    if key == "timeout":
        for unit, seconds in (("h", 3600), ("min", 60)):
            if value >= seconds and value % seconds == 0:
                return f"{int(value // seconds)} {unit}"
        return f"{value:g} s"
    return f"{value:g}"


def quantity(key: str, value: float) -> str:
    """One limit's value as ``resources`` would write it: ``512Mi``, ``1.5``, ``30m``."""
    if key in ("memory", "tmp"):
        for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if value % size == 0:
                return f"{int(value // size)}{unit}"
        return str(int(value))
    if key == "timeout":
        return f"{int(value // 60)}m" if value % 60 == 0 else f"{value:g}s"
    return f"{value:g}"


def parse_resources(value: Any, origin: str = "resources") -> Resources:
    """Parse ``resources`` given as a mapping (job.json, the operator) or ``memory=2Gi,cpu=1`` (a setting).

    :param origin: what to name in an error (``resources``, ``[python_exec] max_resources``).
    :raises JobConfigError: an unknown key (with its near miss), or a value that is not a valid
        quantity or duration; one line naming the key, the value and the fix.
    """
    if value is None or isinstance(value, Resources):
        return value or Resources()
    if isinstance(value, str):
        value = _pairs(value, origin)
    if not isinstance(value, Mapping):
        raise JobConfigError(f"{origin} must be an object like {_EXAMPLE}, not {type(value).__name__}")
    parsed: dict[str, Any] = {}
    for key, raw in value.items():
        if key not in KEYS:
            close = near_miss(str(key), KEYS)
            hint = f"did you mean {close!r}?" if close else f"use {', '.join(KEYS)}"
            raise JobConfigError(f"{origin} has no key {key!r}; {hint}")
        if raw is not None:
            parsed[key] = _parse_one(key, raw, origin)
    return Resources(**parsed)


def _pairs(text: str, origin: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not val.strip():
            raise JobConfigError(f"{origin} entry {item!r} is not KEY=VALUE; write e.g. memory=2Gi,cpu=1,timeout=1h")
        pairs[key.strip()] = val.strip()
    return pairs


def _parse_one(key: str, raw: Any, origin: str) -> float | int:
    shown = repr(raw)
    where = f"{origin} {key} = {shown if len(shown) <= 40 else shown[:37] + '...'}"
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise JobConfigError(f"{where} is not a quantity; write it like {_EXAMPLE}")
    if key == "timeout":
        seconds = parse_duration(raw, where)
        if not 0 < seconds <= MAX_TIMEOUT_S:
            raise JobConfigError(f"{where} is out of range; give a positive duration up to 366d, e.g. 30m")
        return seconds
    amount = parse_quantity(raw, where)
    if key == "cpu":
        if not Decimal("0.01") <= amount <= 4096:
            raise JobConfigError(f"{where} is out of range; give cores from 10m (0.01) to 4096, e.g. 1.5 or 500m")
        return float(amount)
    whole = math.ceil(amount)
    if key == "pids" and not (1 <= whole <= 2**22 and amount == whole):
        raise JobConfigError(f"{where} is not a whole number of processes from 1 to 4194304; e.g. 256")
    if key == "memory" and whole < MIN_MEMORY:
        raise JobConfigError(f"{where} is under 16Mi, too little to start Python; give e.g. 512Mi")
    if key == "tmp" and not 1 <= whole:
        raise JobConfigError(f"{where} must be at least one byte; give e.g. 1Gi")
    if whole >= 2**62:
        raise JobConfigError(f"{where} is too large; give at most 4Ei")
    return whole


def parse_quantity(raw: int | float | str, where: str = "quantity") -> Decimal:
    """A Kubernetes quantity (``512Mi``, ``2Gi``, ``1.5``, ``500m``, ``1e9``) as an exact number.

    :raises JobConfigError: not a non-negative quantity.
    """
    text = str(raw).strip()
    match = _QUANTITY.match(text)
    if match is None or (isinstance(raw, float) and not math.isfinite(raw)):
        raise JobConfigError(f"{where} is not a quantity; write e.g. 512Mi, 2Gi, 1.5 or 500m")
    try:
        number = Decimal(match["num"])
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimal numbers
        raise JobConfigError(f"{where} is not a quantity; write e.g. 512Mi, 2Gi, 1.5 or 500m") from None
    if match["exp"] is not None:
        return number.scaleb(int(match["exp"]))
    return number * Decimal(_SUFFIXES[match["suffix"] or ""])


def parse_duration(raw: int | float | str, where: str = "duration") -> float:
    """A duration in seconds: a number of seconds, or ``30s``, ``10m``, ``1h``, ``1h30m``, ``500ms``.

    :raises JobConfigError: not a duration.
    """
    if isinstance(raw, (int, float)):
        try:
            seconds = float(raw)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise JobConfigError(f"{where} is not a duration; write e.g. 30s, 10m or 1h")
        return seconds
    text = raw.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        raise JobConfigError(f"{where} is not a duration; write e.g. 30s, 10m or 1h")
    return sum(float(p["num"]) * _UNIT_S[p["unit"]] for p in parts)


def effective_resources(
    job: Resources | None, override: Resources | None, default: str | None, ceiling: str | None
) -> Resources:
    """The limits a run gets: ``default_resources``, then the job's own, then the operator's or CLI's.

    A limit the job leaves unset while ``max_resources`` names it gets the ceiling.

    :param default: ``[python_exec] default_resources`` (``memory=2Gi,cpu=1``), or empty.
    :param ceiling: ``[python_exec] max_resources``, or empty.
    :raises JobConfigError: a value over the ceiling (one line naming both and the fix), or a
        setting that does not parse.
    """
    wanted = parse_resources(default or "", "[python_exec] default_resources").merged(job).merged(override)
    most = parse_resources(ceiling or "", "[python_exec] max_resources")
    values = {}
    for key in KEYS:
        asked, limit = getattr(wanted, key), getattr(most, key)
        if asked is not None and limit is not None and asked > limit:
            raise JobConfigError(
                f"resources {key} {show(key, asked)} is over [python_exec] max_resources {key} "
                f"{show(key, limit)}; ask for {quantity(key, limit)} or less"
            )
        values[key] = asked if asked is not None else limit
    return Resources(**values)
