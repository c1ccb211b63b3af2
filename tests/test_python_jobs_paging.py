"""The "Python jobs" list as Airflow's DAG list: pages (``limit``, ``offset``, the total), a search on
jobId, DAG id and tag, the most recently run job first, the same in the HTML page with previous/next
links; a request costs the same number of SQL statements at 10 DAGs and at 200; an upload is listed
only to a user who may read its own DAG. DAGs are written to the metadata database as the DAG
processor writes them, with real runs; real JWTs of Airflow's simple auth manager.
"""

from __future__ import annotations

import html
import uuid

import pytest
from conftest import bearer, bundle, hello_files, post_bundle, save_parsed_dags, write_job


def add_dags(folder, prefix: str, count: int, *, runs: dict[int, int] | None = None, tags=("team-a",)) -> list[str]:
    """Serialize DAGs ``<prefix>_<i>`` (one ``PythonJobOperator`` running its own job folder, tagged
    ``tags`` plus ``<prefix>-odd`` for odd ``i``) and give DAG ``i`` a finished run ``runs[i]`` minutes
    after a fixed start; returns the DAG ids."""
    import pendulum
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    from airflow_python_exec import PythonJobOperator

    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    made, ids = [], []
    for i in range(count):
        dag_id = f"{prefix}_{i:03d}"
        write_job(folder / "jobs" / f"job_of_{dag_id}", "print(1)", job={"jobId": f"job_of_{dag_id}"})
        extra = [f"{prefix}-odd"] if i % 2 else []
        with DAG(dag_id, schedule=None, start_date=start, tags=[*tags, *extra]) as dag:
            PythonJobOperator(task_id="run", job=f"jobs/job_of_{dag_id}")
        (folder / f"{dag_id}.py").write_text(f"# {dag_id}\n")  # its code is stored, as the processor does
        dag.fileloc = str(folder / f"{dag_id}.py")
        dag.relative_fileloc = f"{dag_id}.py"
        made.append(LazyDeserializedDAG.from_dag(dag))
        ids.append(dag_id)
    save_parsed_dags(made)
    with create_session() as session:
        for i, minute in (runs or {}).items():
            dag = SerializedDagModel.get_dag(ids[i], session=session)
            dag.create_dagrun(
                run_id=f"manual__{i}",
                logical_date=None,
                data_interval=None,
                run_after=start.add(minutes=minute),
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.TEST,
                state=DagRunState.SUCCESS,
                session=session,
            )
    return ids


def drop_dags(pattern: str) -> None:
    """Delete the DAGs whose id matches the SQL ``LIKE`` ``pattern`` (and their runs and versions)."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ids = list(session.scalars(select(DagModel.dag_id).where(DagModel.dag_id.like(pattern))))
    for dag_id in ids:
        delete_dag(dag_id)


@pytest.fixture
def prefix():
    """A DAG id prefix of this test alone; its DAGs are deleted after it."""
    name = f"pg{uuid.uuid4().hex[:8]}"
    yield name
    drop_dags(f"{name}%")


def listed(client, auth, query: str, user: str = "viewer") -> dict:
    answer = client.get(f"/api/jobs?{query}", headers=bearer(auth, user))
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("listed_ids", [500, 0], ids=["ids named", "every DAG read in order"])
def test_pages_come_most_recently_run_first_and_add_up_to_the_total(
    client, auth, key, tmp_path, prefix, monkeypatch, listed_ids
) -> None:
    """Runs at minutes 5, 50, 20 for DAGs 3, 7, 1; the rest never ran (last, by DAG id); pages of 4 cover
    every job once, and ``limit`` is capped at ``[api] maximum_page_limit``. The same whether the
    ordering query names the DAG ids or reads every DAG in order (past ``MAX_LISTED_IDS`` ids)."""
    from airflow_python_exec.plugins import listing

    monkeypatch.setattr(listing, "MAX_LISTED_IDS", listed_ids)
    ids = add_dags(tmp_path, prefix, 11, runs={3: 5, 7: 50, 1: 20})
    whole = listed(client, auth, f"search={prefix}&limit=100")
    order = [u["dag_id"] for job in whole["jobs"] for u in job["usedBy"]]
    never = sorted(set(ids) - {ids[7], ids[1], ids[3]})
    assert order == [ids[7], ids[1], ids[3], *never]
    assert whole["total_entries"] == 11
    assert whole["jobs"][0]["jobId"] == f"job_of_{ids[7]}" and whole["jobs"][0]["usedBy"][0]["task_state"] is None
    assert whole["jobs"][0]["usedBy"][0]["last_run"]["run_id"] == "manual__7"
    pages = [listed(client, auth, f"search={prefix}&limit=4&offset={offset}") for offset in (0, 4, 8)]
    assert [len(p["jobs"]) for p in pages] == [4, 4, 3]
    assert [j["jobId"] for p in pages for j in p["jobs"]] == [j["jobId"] for j in whole["jobs"]]
    assert all(p["total_entries"] == 11 for p in pages)
    assert listed(client, auth, f"search={prefix}&limit=100000")["limit"] == 100  # Airflow's default cap
    assert client.get("/api/jobs?limit=-1", headers=bearer(auth, "viewer")).status_code == 422


def test_search_matches_job_id_dag_id_and_tag_in_any_case(client, auth, key, tmp_path, prefix) -> None:
    ids = add_dags(tmp_path, prefix, 6, tags=("Finance",))
    by_tag = listed(client, auth, f"search={prefix.upper()}-ODD&limit=100")
    assert sorted(u["dag_id"] for j in by_tag["jobs"] for u in j["usedBy"]) == [ids[1], ids[3], ids[5]]
    assert by_tag["total_entries"] == 3
    by_job = listed(client, auth, f"search=JOB_OF_{ids[4]}")  # the folder's name is the jobId
    assert [j["jobId"] for j in by_job["jobs"]] == [f"job_of_{ids[4]}"] and by_job["total_entries"] == 1
    assert listed(client, auth, f"search={ids[2]}")["total_entries"] == 1
    nothing = listed(client, auth, "search=no-such-job-anywhere-42")
    assert (nothing["jobs"], nothing["total_entries"]) == ([], 0)


def test_the_html_page_has_a_search_box_and_previous_and_next_links(client, auth, key, tmp_path, prefix) -> None:
    add_dags(tmp_path, prefix, 5)
    first = html.unescape(client.get(f"/?search={prefix}&limit=2", headers=bearer(auth, "viewer")).text)
    assert 'name="search"' in first and f'value="{prefix}"' in first
    assert "jobs 1\u20132 of 5" in first
    assert f'rel="next" href="/?offset=2&limit=2&search={prefix}"' in first and 'rel="prev"' not in first
    last = html.unescape(client.get(f"/?search={prefix}&limit=2&offset=4", headers=bearer(auth, "viewer")).text)
    assert f'rel="prev" href="/?offset=2&limit=2&search={prefix}"' in last and 'rel="next"' not in last
    assert last.count('href="/jobs/') == 1


def statements_of(call) -> list[str]:
    """The SQL statements ``call`` makes through Airflow's engine."""
    from airflow import settings
    from sqlalchemy import event

    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    event.listen(settings.engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(settings.engine, "before_cursor_execute", count)
    return seen


def test_a_request_makes_as_many_sql_statements_at_200_dags_as_at_10(client, auth, key, tmp_path, prefix) -> None:
    """A page of 5 (JSON and HTML), warm, at 10 and then 200 DAGs with runs: the same statements, and
    none lists every task id."""
    counts = {}
    made = 0
    for total in (10, 200):
        add_dags(
            tmp_path / str(total), f"{prefix}n{total}", total - made, runs={i: i for i in range(0, total - made, 3)}
        )
        made = total
        headers = bearer(auth, "viewer")
        for path in (f"/api/jobs?search={prefix}&limit=5", f"/?search={prefix}&limit=5"):
            assert client.get(path, headers=headers).status_code == 200  # fills what is kept per DAG version
            seen = statements_of(lambda path=path, headers=headers: client.get(path, headers=headers))
            counts[(total, path[:5])] = len(seen)
            assert not any("task_instance.task_id IN" in s for s in seen), seen
    assert counts[(10, "/api/")] == counts[(200, "/api/")] and counts[(10, "/?sea")] == counts[(200, "/?sea")], counts
    assert counts[(200, "/api/")] <= 8, counts


@pytest.fixture
def team_manager(auth, monkeypatch):
    """DAG-level permissions (as FAB or Keycloak give): ``viewer`` may read only DAGs starting with
    ``job_team_``; ``admin`` may read every DAG."""
    from airflow.api_fastapi.app import get_auth_manager

    manager_type = type(get_auth_manager())
    original = manager_type.get_authorized_dag_ids

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
        if user.get_name() == "admin" or details is None:
            return True
        return details.id.startswith("job_team_")

    def get_authorized_dag_ids(self, *, user, method="GET", **kw):
        ids = original(self, user=user, method=method, **kw)
        return ids if user.get_name() == "admin" else {d for d in ids if d.startswith("job_team_")}

    monkeypatch.setattr(manager_type, "is_authorized_dag", is_authorized_dag)
    monkeypatch.setattr(manager_type, "get_authorized_dag_ids", get_authorized_dag_ids)


def test_an_upload_is_listed_only_to_users_who_may_read_its_dag(client, auth, key, uploads, team_manager) -> None:
    """Two uploads, not parsed yet: the viewer, who may read ``job_team_*`` only, sees ``team_etl`` but
    neither ``hello`` nor its macros and .env keys (list, detail page, search); the admin sees both."""
    assert post_bundle(client, auth, bundle(hello_files(key))).status_code == 201
    files = hello_files(key)
    files["job.json"] = files["job.json"].replace('"jobId": "hello"', '"jobId": "team_etl"')
    assert post_bundle(client, auth, bundle(files, top="team_etl"), name="team_etl.zip").status_code == 201

    seen = {j["jobId"]: j for j in listed(client, auth, "limit=100")["jobs"]}
    assert "team_etl" in seen and "hello" not in seen and seen["team_etl"]["parsing"] is True
    viewer = bearer(auth, "viewer")
    assert client.get("/api/jobs/hello", headers=viewer).status_code == 404
    page = client.get("/?search=hello", headers=viewer).text
    assert "No job matches" in page and "/jobs/hello" not in page and "DB_PASSWORD" not in page
    assert "DB_PASSWORD" not in client.get("/api/jobs?search=hello", headers=viewer).text
    admin = {j["jobId"] for j in listed(client, auth, "limit=100", user="admin")["jobs"]}
    assert {"hello", "team_etl"} <= admin
