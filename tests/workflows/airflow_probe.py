"""Run inside the Airflow venv by the airflow tests: load a DAG folder, or test one DAG of it; print JSON.

    python airflow_probe.py bag DAGS_FOLDER
    python airflow_probe.py test DAGS_FOLDER DAG_ID
"""

from __future__ import annotations

import json
import sys


def main(command: str, folder: str, dag_id: str | None = None) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(folder)
    if command == "bag":
        print(json.dumps({"import_errors": bag.import_errors, "dag_ids": sorted(bag.dag_ids)}))
        return
    dag = bag.get_dag(dag_id)
    run = dag.test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "tasks": states}))


if __name__ == "__main__":
    main(*sys.argv[1:])
