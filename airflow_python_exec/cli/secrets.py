"""``encrypt`` and ``generate-key``: Fernet tokens for ``secure`` macros."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from airflow_python_exec.errors import PythonExecError

if TYPE_CHECKING:  # imported where used: generate-key needs neither pydantic nor the settings
    pass
from .configuration import settings_from_args


def cmd_encrypt(args: argparse.Namespace) -> int:
    from airflow_python_exec import crypto

    raw = sys.stdin.buffer.read()
    raw = raw[:-1] if raw.endswith(b"\n") else raw
    print(crypto.encrypt(_secret_text(raw), settings_from_args(args).fernet_keys()))
    return 0


def _secret_text(raw: bytes) -> str:
    """The value to encrypt as text: it becomes an environment variable, so UTF-8 without NUL."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PythonExecError(
            f"the value on stdin is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "a secure macro becomes an environment variable, so give UTF-8 text (base64-encode binary data)"
        ) from None
    if "\x00" in value:
        raise PythonExecError(
            f"the value on stdin contains a NUL byte (offset {value.index(chr(0))}); an environment "
            "variable cannot hold one, so remove it (base64-encode binary data)"
        )
    return value


def cmd_generate_key(_args: argparse.Namespace) -> int:
    from airflow_python_exec import crypto

    print(crypto.generate_key())
    return 0
