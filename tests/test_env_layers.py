"""The child's environment, layer by layer (DESIGN.md "The child process's environment")."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from conftest import env_of, write_job

from airflow_python_exec import EngineSettings, PythonExecutionService, PythonJob
from airflow_python_exec.crypto import encrypt, generate_key
from airflow_python_exec.errors import JobConfigError, PythonExecError

LAYERS = ["worker", "context", "dotenv", "python_env", "job_macro", "run_macro"]


def run_lines(settings: EngineSettings, job, **kwargs) -> tuple[list[str], int]:
    lines: list[str] = []
    service = PythonExecutionService(settings)
    try:
        result = service.run(job, on_line=lines.append, **kwargs)
    finally:
        service.close()
    return lines, result.exit_code


@pytest.mark.parametrize("top", range(len(LAYERS)))
def test_each_layer_beats_the_ones_below(settings, job_dir: Path, monkeypatch, top: int) -> None:
    """K is set in layers 0..top; the script must see the value of layer ``top``."""
    present = LAYERS[: top + 1]
    if "worker" in present:
        monkeypatch.setenv("K", "worker")
    job = {"jobId": "j", "packageName": "app.py"}
    if "python_env" in present:
        job["pythonEnv"] = {"env": {"K": "python_env"}}
    if "job_macro" in present:
        job["runtimeConfig"] = {"macros": [{"key": "K", "value": "job_macro"}]}
    write_job(job_dir, job=job, dotenv="K=dotenv\n" if "dotenv" in present else None)
    lines, code = run_lines(
        settings,
        job_dir,
        context_env={"K": "context"} if "context" in present else None,
        dotenv_as_macros="dotenv" in present,
        macros={"K": "run_macro"} if "run_macro" in present else None,
    )
    assert code == 0
    assert env_of(lines)["K"] == LAYERS[top]


def test_airflow_secrets_never_reach_the_script(settings, job_dir: Path, monkeypatch) -> None:
    for name in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW_CONN_DB",
        "AIRFLOW_VAR_TOKEN",
        "_AIRFLOW_PROCESS_CONTEXT",
        "__AIRFLOW_SUPERVISOR_FD",
    ):
        monkeypatch.setenv(name, "airflow-secret")
    monkeypatch.setenv("WORKER_SETTING", "kept")
    lines, _ = run_lines(settings, write_job(job_dir))
    env = env_of(lines)
    assert env["WORKER_SETTING"] == "kept"
    assert not [k for k, v in env.items() if v == "airflow-secret"]


def test_inherit_env_false_keeps_only_the_minimal_set(settings, job_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKER_SETTING", "dropped")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("TZ", "UTC")
    lines, _ = run_lines(settings.override(inherit_env=False), write_job(job_dir))
    env = env_of(lines)
    assert "WORKER_SETTING" not in env
    assert env["LC_TIME"] == "C" and env["TZ"] == "UTC" and "PATH" in env
    assert set(env) <= {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "TMPDIR",
        "USER",
        "PYTHONUNBUFFERED",
        "LC_CTYPE",
        "PYTHON_EXEC_RUN_ID",
        "PYTHON_EXEC_RESULT_FILE",
    } | {k for k in env if k.startswith("LC_")}


def test_dotenv_is_left_alone_unless_asked(settings, job_dir: Path) -> None:
    write_job(job_dir, dotenv="FROM_DOTENV=yes\n")
    lines, _ = run_lines(settings, job_dir)
    assert "FROM_DOTENV" not in env_of(lines)
    assert (job_dir / ".env").read_text() == "FROM_DOTENV=yes\n"


def test_script_loading_dotenv_itself_does_not_beat_macros(settings, job_dir: Path) -> None:
    script = """
        import os
        from dotenv import load_dotenv
        load_dotenv()
        print(os.environ["A"], os.environ["B"])
    """
    write_job(job_dir, script, dotenv="A=from-dotenv\nB=from-dotenv\n")
    lines, _ = run_lines(settings, job_dir, macros={"A": "from-macro"})
    assert lines == ["from-macro from-dotenv"]


def test_dotenv_syntax_is_python_dotenvs(settings, job_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKER_SECRET", "must-not-be-copied")
    dotenv = """
        # a comment
        export EXPORTED=1
        QUOTED="two words"  # trailing comment
        SINGLE='$NOT_EXPANDED'
        MULTI="line one
        line two"
        REF=${WORKER_SECRET}
        NOVALUE
    """
    write_job(job_dir, dotenv=dotenv)
    env = env_of(run_lines(settings, job_dir, dotenv_as_macros=True)[0])
    assert env["EXPORTED"] == "1"
    assert env["QUOTED"] == "two words"
    assert env["SINGLE"] == "$NOT_EXPANDED"
    assert env["MULTI"] == "line one\nline two"
    assert env["REF"] == "${WORKER_SECRET}"
    assert "NOVALUE" not in env


def test_bad_dotenv_key_is_refused_before_start(settings, job_dir: Path) -> None:
    write_job(job_dir, "open('started', 'w')\n", dotenv="BAD-KEY=1\n")
    with pytest.raises(JobConfigError, match="'BAD-KEY'"):
        run_lines(settings, job_dir, dotenv_as_macros=True)
    assert not (job_dir / "started").exists()


@pytest.mark.parametrize("macros", [{"1BAD": "x"}, [{"key": "OK", "value": "a\x00b"}], [{"key": "K", "valu": 1}]])
def test_bad_run_macros_are_refused_before_start(settings, job_dir: Path, macros) -> None:
    write_job(job_dir, "open('started', 'w')\n")
    with pytest.raises(JobConfigError):
        run_lines(settings, job_dir, macros=macros)
    assert not (job_dir / "started").exists()


def test_prepend_paths_go_in_front_even_when_env_sets_path(settings, job_dir: Path) -> None:
    (job_dir / "tools").mkdir(parents=True)
    write_job(job_dir, job={"jobId": "j", "pythonEnv": {"env": {"PATH": "/usr/bin:/bin"}, "prepend_paths": ["tools"]}})
    env = env_of(run_lines(settings, job_dir)[0])
    assert env["PATH"] == f"{job_dir / 'tools'}:/usr/bin:/bin"
    assert "VIRTUAL_ENV" not in env


def test_cwd_is_the_job_folder_unless_given(settings, job_dir: Path) -> None:
    (job_dir / "data").mkdir(parents=True)
    write_job(job_dir, "import os\nprint(os.getcwd())\n")
    assert run_lines(settings, job_dir)[0] == [str(job_dir)]
    assert run_lines(settings, job_dir, cwd="data")[0] == [str(job_dir / "data")]
    with pytest.raises(JobConfigError, match="not a folder"):
        run_lines(settings, job_dir, cwd="missing")


SHOW_SECRET = """
    import hashlib, os
    value = os.environ.get("API_TOKEN")
    print("token:", value)
    print("sha:", hashlib.sha256(value.encode()).hexdigest() if value else None)
"""


def test_secure_macro_is_decrypted_for_the_script_and_masked_in_output(settings, job_dir: Path, fernet_key) -> None:
    secret = "s3cr3t-value-which-is-long"
    token = encrypt(secret, [fernet_key])
    write_job(
        job_dir,
        SHOW_SECRET,
        job={"jobId": "j", "runtimeConfig": {"macros": [{"key": "API_TOKEN", "value": token, "secure": True}]}},
    )
    lines, code = run_lines(settings, job_dir)
    assert code == 0
    assert lines == ["token: ***", f"sha: {hashlib.sha256(secret.encode()).hexdigest()}"]


def test_key_rotation_decrypts_with_an_older_key(settings, job_dir: Path, fernet_key) -> None:
    token = encrypt("rotated-secret", [fernet_key])
    rotated = settings.override(fernet_key=f"{generate_key()},{fernet_key}")
    write_job(job_dir, SHOW_SECRET)
    lines, _ = run_lines(rotated, job_dir, macros=[{"key": "API_TOKEN", "value": token, "secure": True}])
    assert lines == ["token: ***", f"sha: {hashlib.sha256(b'rotated-secret').hexdigest()}"]


@pytest.mark.parametrize("configured", ["other-key", None])
def test_undecryptable_token_is_warned_and_skipped(settings, job_dir: Path, caplog, configured) -> None:
    token = encrypt("secret", [generate_key()])
    key = generate_key() if configured else None
    write_job(job_dir, SHOW_SECRET)
    with caplog.at_level(logging.WARNING):
        lines, code = run_lines(
            settings.model_copy(update={"fernet_key": None}) if key is None else settings.override(fernet_key=key),
            job_dir,
            macros=[{"key": "API_TOKEN", "value": token, "secure": True}, {"key": "OTHER", "value": "1"}],
        )
    assert code == 0
    assert lines[0] == "token: None"
    assert "secure macro API_TOKEN skipped" in caplog.text
    assert token not in caplog.text


@pytest.mark.parametrize("configured", ["other-key", None])
def test_undecryptable_secure_macro_fail_refuses_the_job_before_it_starts(
    settings, job_dir: Path, tmp_path: Path, caplog, configured
) -> None:
    """After a key rotation a job must not quietly run without its credentials when the deployment
    says ``undecryptable_secure_macro = fail``: one line naming the macro, the script never starts."""
    token = encrypt("secret", [generate_key()])
    marker = tmp_path / "started"
    write_job(job_dir, f"open({str(marker)!r}, 'w').write('ran')\n")
    strict = settings.override(undecryptable_secure_macro=" FAIL ", fernet_key=configured and generate_key())
    if configured is None:
        strict = strict.model_copy(update={"fernet_key": None})
    with caplog.at_level(logging.WARNING), pytest.raises(JobConfigError) as refused:
        run_lines(strict, job_dir, macros=[{"key": "API_TOKEN", "value": token, "secure": True}])
    message = str(refused.value)
    assert message.startswith("secure macro API_TOKEN refused ([python_exec] undecryptable_secure_macro = fail): ")
    assert message.endswith(("airflow-python-exec encrypt", "airflow-python-exec generate-key)"))  # the fix
    assert "\n" not in message and token not in message
    assert refused.value.exit_code == 2
    assert not marker.exists() and "skipped" not in caplog.text


def test_undecryptable_secure_macro_takes_skip_or_fail_only(settings) -> None:
    assert EngineSettings().undecryptable_secure_macro == "skip"
    with pytest.raises(PythonExecError, match=r"undecryptable_secure_macro = 'warn' is invalid"):
        settings.override(undecryptable_secure_macro="warn")


def test_job_loaded_object_and_path_behave_the_same(settings, job_dir: Path) -> None:
    write_job(job_dir, "print('same')\n")
    assert run_lines(settings, PythonJob.load(job_dir))[0] == run_lines(settings, str(job_dir))[0] == ["same"]
    assert os.path.exists(job_dir / "app.py")


def test_dotenv_that_is_not_utf8_is_refused_in_one_line(settings, job_dir: Path) -> None:
    write_job(job_dir)
    (job_dir / ".env").write_bytes(b"NAME=caf\xe9\n")
    with pytest.raises(JobConfigError, match="UTF-8") as info:
        run_lines(settings, job_dir, dotenv_as_macros=True)
    assert "\n" not in str(info.value)
