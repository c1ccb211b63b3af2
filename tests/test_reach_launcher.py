"""The job's variables reach only the job's own process (DESIGN.md "Reach: what a job may name").

Issue 23, point 1, as the attacker wrote it: a job ships a tiny shared object and sets ``LD_PRELOAD``
to it, by a macro, by ``.env`` (with ``dotenv_as_macros``) and by ``pythonEnv.env``. Before, the
variable was in the environment of ``setpriv`` and ``bwrap``, which run as the worker before any
namespace exists: the object's code ran there, outside the sandbox. Here the object writes a marker
(naming the executable it was loaded into) whenever it is loaded into anything but the job's Python:
the marker lies in this test's ``/tmp`` folder, which a sandboxed process cannot see at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_job

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.isolation.sandbox import unusable

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and bwrap are Linux's"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="the attack needs a C compiler to build its .so"),
]

PROBE_C = r"""
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void probe(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) return;
    exe[n] = 0;
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    if (strncmp(base, "python", 6) == 0) return; /* the job's own process: where the variable belongs */
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    write(fd, exe, strlen(exe));
    write(fd, "\n", 1);
    close(fd);
}
"""

SCRIPT = "import os\nprint('LD_PRELOAD in the job:', os.environ.get('LD_PRELOAD'))\n"


def build_probe(job: Path, marker: Path) -> Path:
    """Compile the shared object into the job folder (what the job author ships)."""
    source = job / "probe.c"
    source.write_text(PROBE_C)
    library = job / "probe.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    return library


SANDBOXES = [
    "off",
    pytest.param(
        "bubblewrap",
        marks=pytest.mark.skipif(
            sys.platform.startswith("linux") and unusable() is not None, reason=f"bwrap cannot run here: {unusable()}"
        ),
    ),
]


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("via", ["macro", "operator macro", ".env", "pythonEnv.env"])
def test_ld_preload_set_by_the_job_never_runs_in_the_launcher(tmp_path, settings, sandbox, via) -> None:
    job = tmp_path / "jobs" / "preload"
    job.mkdir(parents=True)
    marker = tmp_path / "loaded-outside-the-job"
    library = build_probe(job, marker)
    config: dict = {"jobId": "preload", "packageName": "app.py"}
    run_kwargs: dict = {}
    if via == "macro":
        config["runtimeConfig"] = {"macros": [{"key": "LD_PRELOAD", "value": str(library)}]}
    elif via == "operator macro":
        run_kwargs["macros"] = {"LD_PRELOAD": str(library)}
    elif via == ".env":
        (job / ".env").write_text(f"LD_PRELOAD={library}\n")
        run_kwargs["dotenv_as_macros"] = True
    else:
        config["pythonEnv"] = {"env": {"LD_PRELOAD": str(library)}}
    write_job(job, SCRIPT, job=config)
    lines: list[str] = []
    result = PythonExecutionService(settings.override(sandbox=sandbox)).run(
        job, on_line=lines.append, on_setup_line=lambda _line: None, **run_kwargs
    )
    assert result.exit_code == 0, lines
    assert f"LD_PRELOAD in the job: {library}" in lines  # it reached the job's own process
    assert not marker.exists(), f"the job's .so ran as the worker in: {marker.read_text()}"


def test_the_wrapper_runs_with_the_workers_cleaned_environment_and_the_script_gets_the_jobs(
    tmp_path, monkeypatch
) -> None:
    """A wrapper that records its own environment, then starts the script (as ``setpriv`` does)."""
    from airflow_python_exec.isolation.env_handoff import Handoff

    monkeypatch.setenv("AIRFLOW_CONN_HIDDEN", "postgres://u:pw@db/x")
    monkeypatch.setenv("WORKER_ONLY", "kept")
    value = 'it\'s a "quoted"\nmulti-line $HOME `id` value'
    env = {
        "PATH": "/usr/bin:/bin",
        "WORKER_ONLY": "kept",
        "JOB_VALUE": value,
        "LD_PRELOAD": "/no/such.so",
        "RAW_BYTES": "caf\udce9",  # a Latin-1 byte, as os.environ holds what is not UTF-8
    }
    outer = tmp_path / "outer.env"
    wrapper = ["/bin/sh", "-c", 'env > "$0"; exec "$@"', str(outer)]
    script = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    with Handoff(wrapper, [], script, env) as start:
        assert not any("quoted" in arg for arg in start.argv)  # values never travel in an argv
        done = subprocess.run(start.argv, env=start.env, pass_fds=start.pass_fds, capture_output=True, check=True)
    seen_outside = outer.read_text()
    assert "JOB_VALUE" not in seen_outside and "LD_PRELOAD" not in seen_outside
    assert "AIRFLOW_CONN_HIDDEN" not in seen_outside and "WORKER_ONLY=kept" in seen_outside
    seen = json.loads(done.stdout)
    assert seen["JOB_VALUE"] == value and seen["LD_PRELOAD"] == "/no/such.so" and seen["WORKER_ONLY"] == "kept"
    assert seen["RAW_BYTES"] == "caf\udce9"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_odd_values_reach_the_script_exactly(tmp_path, settings, sandbox) -> None:
    """Quotes, newlines, ``$``, backticks and a leading dash travel through the handoff unchanged."""
    value = "-x 'single' \"double\"\nsecond line $HOME `id` \\ end"
    job = write_job(tmp_path / "odd", "import os\nprint(repr(os.environ['ODD']))\n", job={"jobId": "odd"})
    lines: list[str] = []
    result = PythonExecutionService(settings.override(sandbox=sandbox)).run(
        job, macros={"ODD": value}, on_line=lines.append, on_setup_line=lambda _line: None
    )
    assert result.exit_code == 0 and repr(value) in lines, lines
