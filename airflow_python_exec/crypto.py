"""Fernet keys and tokens for ``secure`` macros (cryptography's ``Fernet`` / ``MultiFernet``).

Keys come from ``[python_exec] fernet_key`` (comma-separated; the first encrypts, all decrypt, as
in ``MultiFernet`` key rotation), else Airflow's ``[core] fernet_key``.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from airflow_python_exec.errors import PythonExecError


def generate_key() -> str:
    """Return a new url-safe base64 Fernet key (44 characters)."""
    return Fernet.generate_key().decode()


def multi_fernet(keys: list[str]) -> MultiFernet:
    """Build a ``MultiFernet`` from ``keys`` (first encrypts, all decrypt).

    :raises PythonExecError: no key given, or a key that is not a valid Fernet key (the key itself
        is never shown).
    """
    if not keys:
        raise PythonExecError(
            "no Fernet key configured; set [python_exec] fernet_key or [core] fernet_key "
            "(create one with: airflow-python-exec generate-key)"
        )
    fernets = []
    for index, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise PythonExecError(
                f"Fernet key #{index} of the configured keys is not a valid Fernet key (32 url-safe "
                "base64-encoded bytes); replace it with one from: airflow-python-exec generate-key"
            ) from None
    return MultiFernet(fernets)


def encrypt(value: str, keys: list[str]) -> str:
    """Encrypt ``value`` (UTF-8) with the first of ``keys``; returns the Fernet token as text."""
    return multi_fernet(keys).encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str, fernet: MultiFernet) -> str:
    """Decrypt a ``secure`` macro's token.

    :raises InvalidToken: the token is malformed, was made with another key, or is not UTF-8 text.
    """
    try:
        return fernet.decrypt(token.encode("ascii")).decode("utf-8")
    except (UnicodeError, ValueError, TypeError):
        raise InvalidToken from None
