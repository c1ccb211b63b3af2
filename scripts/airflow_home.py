"""Write a throw-away airflow.cfg for `make demo` / `make test`: SQLite, example_dags, fresh Fernet key.

Usage: python scripts/airflow_home.py AIRFLOW_HOME
"""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent


def main(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    demo_key = (REPO / "example_dags" / "demo_fernet.key").read_text().strip()
    (home / "airflow.cfg").write_text(
        f"""[core]
dags_folder = {REPO / "example_dags"}
load_examples = False
fernet_key = {Fernet.generate_key().decode()}

[database]
sql_alchemy_conn = sqlite:///{home / "airflow.db"}

[logging]
base_log_folder = {home / "logs"}

[python_exec]
# install_path is left unset: jobs use the base installation of the Python that runs Airflow, and
# a job that needs packages (hello: python-dotenv; world_cities: pandas) brings its own pylock.toml.
cache_dir = {home / "cache"}
# First key: a fresh one. Second: the demo key that encrypted example_dags/jobs/hello's secure macro.
fernet_key = {Fernet.generate_key().decode()},{demo_key}
"""
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
