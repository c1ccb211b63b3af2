#!/usr/bin/env bash
# make wheel-check: the package as a user gets it, not this source tree.
#
# 1. `python -m build`: the sdist and the wheel, into a throw-away dist folder; `twine check` on both.
# 2. The wheel holds what only an installed package can miss: the plugin's templates, the provider
#    info and the handler bootstrap, its entry points (provider, plugin, CLI), LICENSE and py.typed.
# 3. A fresh venv (same Python as $BIN) gets the wheel, not `-e .`, with its dependencies; a throw-away
#    AIRFLOW_HOME with the examples' folder as DAGS_FOLDER; from a folder outside the repository,
#    Airflow sees the provider and the plugin, and `airflow dags test hello_python_exec` prints the
#    greeting with the secure macro masked.
# Everything is made under one temporary folder, removed at the end (KEEP=1 keeps it).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$REPO/.venv/bin}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wheel-check.XXXXXX")
[ "${KEEP:-}" = 1 ] && echo "keeping $WORK" || trap 'rm -rf "$WORK"' EXIT
fail() { echo "wheel-check: $*" >&2; exit 1; }

echo "--- build sdist and wheel"
# uv installs the isolated build environment (hatchling), from uv's cache when it has it.
"$BIN/python" -m build --installer uv --outdir "$WORK/dist" "$REPO" > "$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log"; fail "python -m build failed"; }
wheel=$(ls "$WORK"/dist/*.whl)
sdist=$(ls "$WORK"/dist/*.tar.gz)
"$BIN/twine" check --strict "$wheel" "$sdist"

echo "--- what the wheel holds"
"$BIN/python" - "$wheel" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
entry_points = zipfile.ZipFile(sys.argv[1]).read(f"{dist_info}/entry_points.txt").decode()
metadata = zipfile.ZipFile(sys.argv[1]).read(f"{dist_info}/METADATA").decode()
wanted = {
    "provider info": "airflow_python_exec/get_provider_info.py",
    "plugin": "airflow_python_exec/plugins/python_jobs.py",
    "handler bootstrap": "airflow_python_exec/handlers/bootstrap.py",
    "type marker": "airflow_python_exec/py.typed",
    "license": f"{dist_info}/licenses/LICENSE",
}
missing = [f"{what} ({path})" for what, path in wanted.items() if path not in names]
templates = [n for n in names if n.startswith("airflow_python_exec/plugins/templates/") and n.endswith(".html")]
if not templates:
    missing.append("plugin templates (airflow_python_exec/plugins/templates/*.html)")
for group, entry in (
    ("apache_airflow_provider", "airflow_python_exec.get_provider_info:get_provider_info"),
    ("airflow.plugins", "airflow_python_exec.plugins.python_jobs:PythonJobsPlugin"),
    ("console_scripts", "airflow_python_exec.cli:main"),
):
    if f"[{group}]" not in entry_points or entry not in entry_points:
        missing.append(f"entry point [{group}] {entry}")
if "Classifier: Framework :: Apache Airflow :: Provider" not in metadata:
    missing.append("classifier Framework :: Apache Airflow :: Provider")
if missing:
    sys.exit("the wheel lacks: " + "; ".join(missing))
print(f"{len(names)} files; {len(templates)} templates; provider, plugin and CLI entry points; LICENSE")
PY

echo "--- a fresh venv with the wheel and its dependencies"
"$BIN/uv" venv -q --python "$BIN/python" "$WORK/venv"
"$BIN/uv" pip install -q --python "$WORK/venv/bin/python" "$wheel"
VBIN=$WORK/venv/bin

# From a folder outside the repository, so nothing can be imported from the source tree.
cd "$WORK"
export AIRFLOW_HOME=$WORK/airflow_home AIRFLOW__CORE__LOAD_EXAMPLES=False
unset AIRFLOW_CONFIG AIRFLOW__CORE__DAGS_FOLDER PYTHONPATH
"$VBIN/python" "$REPO/scripts/airflow_home.py" "$AIRFLOW_HOME"   # dags_folder = example_dags, demo key
where=$("$VBIN/python" -c 'import airflow_python_exec as m; print(m.__file__)')
case $where in "$WORK/venv/"*) echo "imported from $where" ;; *) fail "imported from $where, not the wheel" ;; esac

"$VBIN/airflow" db migrate > "$WORK/db-migrate.log" 2>&1 || { cat "$WORK/db-migrate.log"; fail "airflow db migrate failed"; }
# Into files first: `airflow ... | grep -q` would fail under pipefail when grep stops reading early.
"$VBIN/airflow" providers list -o plain > "$WORK/providers.txt" 2>&1
grep -q '^airflow-python-exec ' "$WORK/providers.txt" || { cat "$WORK/providers.txt"; fail "airflow providers list lacks airflow-python-exec"; }
"$VBIN/airflow" plugins -o plain > "$WORK/plugins.txt" 2>&1
grep -q "^python_exec .*'url_prefix': '/python-exec'" "$WORK/plugins.txt" \
    || { cat "$WORK/plugins.txt"; fail "airflow plugins lacks python_exec with its /python-exec app"; }
"$VBIN/airflow-python-exec" validate > /dev/null || fail "airflow-python-exec validate failed"

echo "--- airflow dags test hello_python_exec (from the installed wheel)"
"$VBIN/airflow" dags test hello_python_exec > "$WORK/dags-test.log" 2>&1 || { tail -50 "$WORK/dags-test.log"; fail "dags test failed"; }
grep -q "Hello from HelloWorld Demo" "$WORK/dags-test.log" || { tail -50 "$WORK/dags-test.log"; fail "no greeting in the output"; }
grep -q "API token: \*\*\*" "$WORK/dags-test.log" || { tail -50 "$WORK/dags-test.log"; fail "the secure macro was not decrypted and masked"; }
echo "greeting found; secure macro decrypted and masked"
echo "wheel-check: $(basename "$wheel") and $(basename "$sdist") passed"
