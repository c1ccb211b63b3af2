"""Print where the latest version of a data item was written and its row count (``make demo``).

Usage: ``python scripts/show_data_item.py world-cities``. Reads the asset's latest event from
Airflow's metadata database (its ``extra``, written by ``PythonJobOperator``).
"""

from __future__ import annotations

import sys


def main(name: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == name)
            .order_by(AssetEvent.id.desc())
            .first()
        )
        if event is None:
            print(f"data item {name!r} has no version yet", file=sys.stderr)
            return 1
        extra = event.extra or {}
        print(f"data item {name!r}: {extra.get('rows'):,} rows, version {extra.get('version')}")
        print(f"  written to {extra.get('uri')} ({extra.get('size'):,} bytes, {extra.get('format')})")
        print(f"  made by job {extra.get('job_id')} from {extra.get('inputs')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "world-cities"))
