#!/usr/bin/env bash
# `make airflow` / `make airflow-stop`: a local Airflow deployment from the throw-away AIRFLOW_HOME.
#
#   scripts/airflow_local.sh start   api-server (127.0.0.1:$AIRFLOW_PORT, default 8080), scheduler,
#                                    dag-processor and triggerer; LocalExecutor, SQLite; returns once
#                                    /api/v2/monitor/health answers
#   scripts/airflow_local.sh stop    stops exactly the processes `start` started (pid files)
#   scripts/airflow_local.sh env     prints the environment every process shares (for `eval`)
#
# Jobs as DAGs: uploads are on ([python_exec] upload_folder = example_dags/uploads/, gitignored; the
# "Python jobs" page writes there and example_dags/python_jobs.py makes each upload a DAG job_<jobId>),
# and new DAGs start unpaused, so an uploaded job can be triggered (or run on its schedule) at once.
# Both only in this local deployment, and only as defaults: a caller's AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER
# (blank: uploads off) and AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION win.
# EXTRA_DAGS_FOLDER, when set, adds a second local DAG bundle beside example_dags (make e2e's DAGs).
# EXECUTOR=CeleryExecutor with CELERY_WORKERS="worker1 worker2" (make e2e-celery) also starts one
# `airflow celery worker -H NAME@%h -q default,NAME` per name, each with its own [python_exec]
# cache_dir ($AIRFLOW_HOME/workers/NAME/cache), as if on its own machine; the broker and result
# backend come from the caller's AIRFLOW__CELERY__* variables. Metadata stays in SQLite: Airflow 3
# no longer refuses it with a non-sequential executor (Airflow 2 did), and Celery workers never open
# the metadata database (their task processes use the api-server's execution API).
# DB=postgres: the metadata database is a PostgreSQL from Debian's package (installed when missing),
# a cluster of its own under $AIRFLOW_HOME/pg (data, Unix socket, no TCP listener; port $PG_PORT,
# default 5439, names the socket), started before the services and stopped after them; the
# `postgres` extra brings its driver (psycopg2-binary). Default DB=sqlite: SQLite in WAL mode, so the
# scheduler's writes do not wait for the api-server's reads ("database is locked" in bursts of runs).
# Every process gets the same generated [api_auth] jwt_secret: task processes call the api-server's
# execution API with a token signed by it, and a secret per process fails every task with "Invalid
# auth token". Servers listen on loopback only: the api-server on 127.0.0.1, and the scheduler and
# triggerer skip their log servers (which bind every interface; with LocalExecutor the api-server
# reads the task logs from disk).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
: "${AIRFLOW_HOME:=$REPO/.airflow_home}"
BIN=${BIN:-$REPO/.venv/bin}
PORT=${AIRFLOW_PORT:-8080}
RUN=$AIRFLOW_HOME/run
EXECUTOR=${EXECUTOR:-LocalExecutor}
SERVICES=(api-server scheduler dag-processor triggerer)
if [ "$EXECUTOR" = CeleryExecutor ]; then
    for name in ${CELERY_WORKERS:-worker1}; do SERVICES+=("worker-$name"); done
fi
ADMIN_USER=admin
DB=${DB:-sqlite}
PG=$AIRFLOW_HOME/pg
PG_PORT=${PG_PORT:-5439}

shared_env() {
    mkdir -p "$RUN"
    [ -s "$RUN/jwt_secret" ] || "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(48))' > "$RUN/jwt_secret"
    [ -s "$RUN/passwords.json" ] || "$BIN/python" -c \
        "import json, secrets; print(json.dumps({'$ADMIN_USER': secrets.token_urlsafe(9)}))" > "$RUN/passwords.json"
    export AIRFLOW_HOME
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    export AIRFLOW__CORE__EXECUTOR=$EXECUTOR
    export AIRFLOW__API_AUTH__JWT_SECRET
    AIRFLOW__API_AUTH__JWT_SECRET=$(cat "$RUN/jwt_secret")
    export AIRFLOW__API__HOST=127.0.0.1
    export AIRFLOW__API__PORT=$PORT
    export AIRFLOW__API__BASE_URL=http://127.0.0.1:$PORT
    export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$PORT/execution/
    export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=$ADMIN_USER:admin
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$RUN/passwords.json
    export AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER=${AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER-$REPO/example_dags/uploads}
    export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION-False}
    # A new DAG file shows up within seconds, not the default five minutes.
    export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
    if [ "$DB" = postgres ]; then
        export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://airflow@/airflow?host=$PG/sock&port=$PG_PORT"
    fi
    if [ -n "${EXTRA_DAGS_FOLDER:-}" ]; then  # a second DAG bundle (make e2e's own DAGs)
        export AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST='[
            {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
            {"name": "extra", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
             "kwargs": {"path": "'"$EXTRA_DAGS_FOLDER"'"}}]'
    fi
}

alive() { [ -s "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# The newest PostgreSQL server programs of Debian's package (initdb is not on PATH there).
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1; }

# pg RUN...: as the cluster's owner (root may not run PostgreSQL: as the `postgres` system user then).
pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

db_start() {
    if [ "$DB" = sqlite ]; then
        # The database `make airflow-home` made (not one a caller's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN names).
        if [ -f "$AIRFLOW_HOME/airflow.db" ] && [ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]; then
            "$BIN/python" -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')" \
                "$AIRFLOW_HOME/airflow.db"
        fi
        return 0
    fi
    [ "$DB" = postgres ] || { echo "error: DB=$DB: use DB=sqlite (default) or DB=postgres" >&2; exit 2; }
    [ -n "$(pg_bin)" ] || bash "$REPO/scripts/ensure_debs.sh" pg_ctlcluster=postgresql
    local bin
    bin=$(pg_bin)
    mkdir -p "$PG/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$PG"
    if [ ! -s "$PG/data/PG_VERSION" ]; then
        pg "$bin/initdb" -D "$PG/data" -U airflow --auth=trust -E UTF8 > "$RUN/postgres-initdb.log" 2>&1 \
            || { cat "$RUN/postgres-initdb.log" >&2; exit 1; }
    fi
    if ! pg "$bin/pg_ctl" -D "$PG/data" status > /dev/null 2>&1; then
        pg "$bin/pg_ctl" -D "$PG/data" -l "$PG/postgres.log" -w -t 60 \
            -o "-k $PG/sock -p $PG_PORT -c listen_addresses='' -c max_connections=200" start > /dev/null
    fi
    if ! pg "$bin/psql" -h "$PG/sock" -p "$PG_PORT" -U airflow -d postgres -tAc \
        "select 1 from pg_database where datname = 'airflow'" | grep -q 1; then
        pg "$bin/createdb" -h "$PG/sock" -p "$PG_PORT" -U airflow airflow
    fi
    [ -e "$PG/migrated" ] || { "$BIN/airflow" db migrate > "$RUN/db-migrate.log" 2>&1 && touch "$PG/migrated"; } \
        || { tail -20 "$RUN/db-migrate.log" >&2; exit 1; }
    echo "PostgreSQL is up: socket $PG/sock, port $PG_PORT, database airflow (log $PG/postgres.log)"
}

db_stop() {
    [ -s "$PG/data/postmaster.pid" ] || return 0
    pg "$(pg_bin)/pg_ctl" -D "$PG/data" -m fast -w stop > /dev/null && echo "stopped postgresql"
}

start() {
    shared_env
    db_start
    for svc in "${SERVICES[@]}"; do
        if alive "$svc"; then
            echo "$svc already running (pid $(cat "$RUN/$svc.pid"))"
            continue
        fi
        case $svc in
            api-server) args=(api-server --host 127.0.0.1 --port "$PORT") ;;
            scheduler | triggerer) args=("$svc" --skip-serve-logs) ;;
            worker-*) start_worker "${svc#worker-}"; continue ;;
            *) args=("$svc") ;;
        esac
        # setsid: each service leads its own process group, so `stop` ends its workers with it.
        setsid "$BIN/airflow" "${args[@]}" > "$RUN/$svc.log" 2>&1 < /dev/null &
        echo $! > "$RUN/$svc.pid"
    done
    local url=http://127.0.0.1:$PORT
    for _ in $(seq 1 180); do
        if "$BIN/python" -c "import urllib.request as u; u.urlopen('$url/api/v2/monitor/health', timeout=2)" 2>/dev/null; then
            local password
            password=$("$BIN/python" -c "import json; print(json.load(open('$RUN/passwords.json'))['$ADMIN_USER'])")
            wait_for_workers
            echo "Airflow is up: $url  (login: $ADMIN_USER / $password; the password is in $RUN/passwords.json)"
            if [ -n "$AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER" ]; then
                echo "Upload a job on $url/plugin/python-jobs (into $AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER): it becomes the DAG ${AIRFLOW__PYTHON_EXEC__JOB_DAG_PREFIX:-job_}<jobId>"
            fi
            echo "Logs: $RUN/<service>.log   Stop: make airflow-stop"
            return 0
        fi
        for svc in "${SERVICES[@]}"; do
            alive "$svc" || { echo "error: $svc exited; see $RUN/$svc.log" >&2; tail -20 "$RUN/$svc.log" >&2; stop; exit 1; }
        done
        sleep 1
    done
    echo "error: the api-server did not answer on $url within 180 s; see $RUN/api-server.log" >&2
    stop
    exit 1
}

# start_worker NAME: a Celery worker as on a machine of its own: its own environment cache, its own
# Celery node name, and a queue named after it (so a task with queue=NAME runs there, e.g. to warm
# its cache with ProvisionEnvironmentOperator). --skip-serve-logs: its log server would bind every
# interface on a port the other workers want; here the api-server reads the finished tasks' logs
# from the shared disk.
start_worker() {
    local name=$1
    mkdir -p "$AIRFLOW_HOME/workers/$name/cache"
    AIRFLOW__PYTHON_EXEC__CACHE_DIR=$AIRFLOW_HOME/workers/$name/cache \
        setsid "$BIN/airflow" celery worker --celery-hostname "$name@%h" --queues "default,$name" \
        --concurrency "${WORKER_CONCURRENCY:-2}" --skip-serve-logs \
        > "$RUN/worker-$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/worker-$name.pid"
}

# Tasks queued before a worker listens would all go to the first one up: wait for every "ready.".
wait_for_workers() {
    local svc
    for svc in "${SERVICES[@]}"; do
        [[ $svc = worker-* ]] || continue
        for _ in $(seq 1 120); do
            grep -q " ready\." "$RUN/$svc.log" 2>/dev/null && break
            alive "$svc" || { echo "error: $svc exited; see $RUN/$svc.log" >&2; tail -20 "$RUN/$svc.log" >&2; stop; exit 1; }
            sleep 1
        done
        grep -q " ready\." "$RUN/$svc.log" || { echo "error: $svc not ready in 120 s" >&2; stop; exit 1; }
    done
}

stop() {
    # Also every worker a `start` left a pid file for, whatever CELERY_WORKERS says now.
    local workers=()
    for pidfile in "$RUN"/worker-*.pid; do
        [ -e "$pidfile" ] && workers+=("$(basename "$pidfile" .pid)")
    done
    for svc in $(printf '%s\n' "${SERVICES[@]}" "${workers[@]}" | awk '!seen[$0]++'); do
        alive "$svc" || { rm -f "$RUN/$svc.pid"; continue; }
        local pid
        pid=$(cat "$RUN/$svc.pid")
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$RUN/$svc.pid"
        echo "stopped $svc"
    done
    db_stop
}

case ${1:-start} in
    start) start ;;
    stop) stop ;;
    env) shared_env; env | grep -E '^AIRFLOW(_HOME|__)' | sed 's/^/export /' ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
