"""``data-items list`` and ``data-items show NAME``: the data store's data items and their versions.

Read from the data store itself (each version's record, ``{version}.json``, written beside it when it
was published), so they work without Airflow's database, for CLI runs and Airflow runs alike.
"""

from __future__ import annotations

import argparse
import json

from airflow_python_exec.errors import JobConfigError

from .configuration import settings_from_args


def _store(args: argparse.Namespace, project: str | None) -> str:
    from airflow_python_exec.handlers.store import data_store_uri, project_store

    try:
        return project_store(data_store_uri(settings_from_args(args).data_store), project)
    except ValueError as exc:
        raise JobConfigError(str(exc)) from None


def _split(name: str) -> tuple[str | None, str]:
    """``project/name`` -> ``("project", "name")``; ``name`` -> ``(None, "name")``."""
    project, _, item = name.rpartition("/")
    return project or None, item


def cmd_data_items_list(args: argparse.Namespace) -> int:
    from airflow_python_exec.handlers.store import item_names, version_records

    store = _store(args, args.project)
    print(f"{'NAME':<32}{'KIND':<10}{'VERSIONS':>9}  {'LATEST':<32}{'ROWS':>10}  JOB")
    for group, name in item_names(store):
        records = version_records(store, group, name)
        latest = max(records, key=lambda r: str(r.get("version")), default={})
        rows = latest.get("rows")
        label = f"{args.project}/{name}" if args.project else name
        print(
            f"{label:<32}{latest.get('kind') or group:<10}{len(records):>9}  {latest.get('version') or '-':<32}"
            f"{rows if rows is not None else '-':>10}  {latest.get('job_id') or '-'}"
        )
    return 0


def cmd_data_items_show(args: argparse.Namespace) -> int:
    from airflow_python_exec.handlers.store import version_records

    project, name = _split(args.name)
    store = _store(args, project or args.project)
    records = version_records(store, "dataitem", name) or version_records(store, "artifact", name)
    if not records:
        raise JobConfigError(
            f"data item {args.name!r} has no version in {store}; list them with: airflow-python-exec data-items list"
        )
    records.sort(key=lambda r: str(r.get("version")))
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    print(f"data item {args.name!r}: {len(records)} version(s) in {store}")
    for record in reversed(records):  # the latest first
        rows = f"{record['rows']:,} rows, " if isinstance(record.get("rows"), int) else ""
        print(f"- {record.get('version')}  {record.get('created') or ''}")
        print(f"    {record.get('uri')} ({rows}{record.get('size') or 0:,} bytes, {record.get('format')})")
        fields = (record.get("schema") or {}).get("fields") or []
        if fields:
            print("    schema: " + ", ".join(f"{f.get('name')} {f.get('type')}" for f in fields))
        inputs = record.get("inputs") or {}
        made_from = ", ".join(f"{k}={v}" for k, v in inputs.items()) or "no inputs"
        print(f"    made by job {record.get('job_id')} from {made_from}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``data-items list`` / ``data-items show NAME`` under the CLI's subcommands."""
    items = sub.add_parser("data-items", help="the data store's data items and artifacts, and their versions")
    commands = items.add_subparsers(dest="data_items_command", required=True)
    listing = commands.add_parser("list", help="every data item: kind, versions, the latest one, rows, job")
    show = commands.add_parser("show", help="one item's versions: URI, rows, schema, size, the job and inputs")
    show.add_argument("name", help="the data item's name (project/name in a project)")
    show.add_argument("--json", action="store_true", help="print the version records as JSON")
    for command, func in ((listing, cmd_data_items_list), (show, cmd_data_items_show)):
        command.add_argument("--data-store", metavar="URI", help="override [python_exec] data_store")
        command.add_argument("--project", help="a project's data items ({data_store}/{project}/...)")
        command.set_defaults(func=func)
