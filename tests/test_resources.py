"""``resources``: the syntax, the settings' defaults and ceilings, refusals in one line before the
start, the CLI's options and exit status, and the Kubernetes pod they become (DESIGN.md "Resource
limits")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import write_job
from test_refusals import assert_refused, cli

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.isolation.limits import LIMIT_EXIT_CODE, cgroup_parents
from airflow_python_exec.models import PythonJob
from airflow_python_exec.models.resources import Resources, effective_resources, parse_duration, parse_resources


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"memory": "512Mi"}, Resources(memory=512 << 20)),
        ({"memory": "2Gi", "tmp": "1G"}, Resources(memory=2 << 30, tmp=10**9)),
        ({"memory": "1e9"}, Resources(memory=10**9)),
        ({"cpu": "500m"}, Resources(cpu=0.5)),
        ({"cpu": 1.5, "pids": 256}, Resources(cpu=1.5, pids=256)),
        ({"timeout": "1h30m"}, Resources(timeout=5400.0)),
        ({"timeout": 45}, Resources(timeout=45.0)),
        ("memory=2Gi, cpu=1 ,timeout=10m", Resources(memory=2 << 30, cpu=1.0, timeout=600.0)),
    ],
)
def test_quantities_in_kubernetes_syntax(given, expected: Resources) -> None:
    assert parse_resources(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"memroy": "1Gi"}, "resources has no key 'memroy'; did you mean 'memory'?"),
        ({"Timeout": "1h"}, "did you mean 'timeout'?"),
        ({"disk": 1}, "resources has no key 'disk'; use memory, cpu, pids, tmp, timeout"),
        ({"memory": "lots"}, "resources memory = 'lots' is not a quantity; write e.g. 512Mi"),
        ({"memory": "1Mi"}, "is under 16Mi"),
        ({"memory": "512MB"}, "is not a quantity"),
        ({"cpu": 0}, "resources cpu = 0 is out of range"),
        ({"pids": "1.5"}, "is not a whole number of processes"),
        ({"pids": True}, "is not a quantity"),
        ({"timeout": "soon"}, "resources timeout = 'soon' is not a duration; write e.g. 30s, 10m or 1h"),
        ({"timeout": "0s"}, "is out of range"),
        ([1], "resources must be an object like"),
        # hostile values: huge, non-finite, nested, templated, NUL
        ({"timeout": 10**400}, "is not a duration"),
        ({"memory": "9" * 5000}, "resources memory = '999999999999999999999999999999999999..."),
        ({"cpu": float("nan")}, "is not a quantity"),
        ({"memory": {"nested": 1}}, "is not a quantity"),
        ({"memory": "{{ conn.db.password }}"}, "is not a quantity"),
        ({"tmp": "1Gi\x00"}, "is not a quantity"),
        ({"pids": "-1"}, "is not a quantity"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(given, message: str) -> None:
    with pytest.raises(JobConfigError) as raised:
        parse_resources(given)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("30s", "10m", "1h", "500ms", "2d", "90")] == [30, 600, 3600, 0.5, 172800, 90]


def test_defaults_then_the_job_then_the_operator_under_the_ceiling() -> None:
    job, operator = Resources(memory=1 << 30, cpu=2.0), Resources(cpu=0.5)
    got = effective_resources(job, operator, "memory=512Mi,pids=128,timeout=1h", "memory=4Gi,tmp=2Gi")
    # the default's memory is replaced by the job's; the ceiling's tmp applies to a job that named none
    assert got == Resources(memory=1 << 30, cpu=0.5, pids=128, tmp=2 << 30, timeout=3600.0)


def test_asking_over_the_ceiling_is_refused_in_one_line() -> None:
    with pytest.raises(JobConfigError) as raised:
        effective_resources(Resources(memory=8 << 30), None, "", "memory=2Gi")
    assert str(raised.value) == (
        "resources memory 8 GiB is over [python_exec] max_resources memory 2 GiB; ask for 2Gi or less"
    )


def test_a_bad_setting_names_the_setting() -> None:
    with pytest.raises(JobConfigError, match=r"\[python_exec\] default_resources has no key 'mem'"):
        effective_resources(None, None, "mem=1Gi", "")


def test_job_json_resources_and_a_typo_inside(job_dir: Path) -> None:
    write_job(job_dir, "print(1)\n", job={"jobId": "r", "resources": {"memory": "256Mi", "timeout": "5m"}})
    assert PythonJob.load(job_dir).resources == Resources(memory=256 << 20, timeout=300.0)
    write_job(job_dir, "print(1)\n", job={"jobId": "r", "resources": {"memroy": "256Mi"}})
    with pytest.raises(JobConfigError, match="did you mean 'memory'"):
        PythonJob.load(job_dir)


def test_a_near_miss_of_resources_at_the_top_is_refused(job_dir: Path) -> None:
    write_job(job_dir, "print(1)\n", job={"jobId": "r", "resource": {"memory": "256Mi"}})
    with pytest.raises(JobConfigError, match="top-level key 'resource' looks like 'resources'"):
        PythonJob.load(job_dir)


# -- the command line --------------------------------------------------------------------------


def test_cli_options_over_the_ceiling_are_refused_before_the_start(job_dir: Path) -> None:
    write_job(job_dir, "open('started', 'w')\n")
    done = cli("run", str(job_dir), "--memory", "4Gi", env={"AIRFLOW__PYTHON_EXEC__MAX_RESOURCES": "memory=1Gi"})
    assert_refused(done, "resources memory 4 GiB is over [python_exec] max_resources memory 1 GiB; ask for 1Gi")
    assert not (job_dir / "started").exists()


def test_cli_option_typo_is_refused(job_dir: Path) -> None:
    write_job(job_dir, "open('started', 'w')\n")
    assert_refused(cli("run", str(job_dir), "--timeout", "ten minutes"), "resources timeout = 'ten minutes'")
    assert not (job_dir / "started").exists()


def test_cli_exit_status_of_a_run_ended_by_a_limit(job_dir: Path) -> None:
    write_job(job_dir, "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    done = cli("run", str(job_dir), "--timeout", "1s")
    assert done.returncode == LIMIT_EXIT_CODE
    assert done.stdout == "up\n"
    assert f"ERROR: [python_exec] job {job_dir.name} ended: timeout 1 s reached" in done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux") or "memory" not in cgroup_parents(), reason="no memory cgroup")
def test_cli_default_resources_apply_to_a_job_that_names_none(job_dir: Path) -> None:
    write_job(job_dir, "x = bytearray(512 << 20)\nprint('allocated')\n")
    done = cli("run", str(job_dir), env={"AIRFLOW__PYTHON_EXEC__DEFAULT_RESOURCES": "memory=128Mi"})
    assert done.returncode == LIMIT_EXIT_CODE, done.stderr
    assert "ended: memory limit 128 MiB reached (the kernel killed python" in done.stderr


# -- Kubernetes ----------------------------------------------------------------------------------


def test_resources_become_the_pods_requests_and_limits() -> None:
    pytest.importorskip("kubernetes")
    from airflow_python_exec.operators.resources import pod_override, with_pod_resources

    pod = pod_override(parse_resources({"memory": "512Mi", "cpu": 1.5, "tmp": "1Gi", "pids": 64}))
    (container,) = pod.spec.containers
    expected = {"memory": "512Mi", "cpu": "1500m", "ephemeral-storage": "1024Mi"}
    assert (container.name, container.resources.requests, container.resources.limits) == ("base", expected, expected)
    own = {"pod_override": "the DAG's own"}
    assert with_pod_resources({"memory": "1Gi"}, {"executor_config": own})["executor_config"] == own
