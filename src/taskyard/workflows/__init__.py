"""``taskyard.workflows``: DAGs of tasks, run by the control plane or deployed to Apache Airflow.

    import taskyard
    run = taskyard.workflows.run("tasks/", "[process_table_1, process_table_2] >> process_final_table")
    run.wait()

Names are imported when first used: the Airflow helpers need no server parts, the server's flow
driver needs no SDK.
"""

from __future__ import annotations

TYPE_CHECKING = False

_EXPORTS = {
    "run": "taskyard.workflows.runs",
    "FlowRun": "taskyard.workflows.runs",
    "test_tasks": "taskyard.workflows.runs",
    "parse": "taskyard.workflows.dag",
    "FlowError": "taskyard.workflows.dag",
    "FlowStatus": "taskyard.workflows.models",
    "generate_files": "taskyard.workflows.airflow",
    "get_dag_info": "taskyard.workflows.airflow",
    "get_airflow_params": "taskyard.workflows.airflow",
    "run_airflow_task": "taskyard.workflows.airflow",
}

__all__ = [
    "run", "FlowRun", "test_tasks", "parse", "FlowError", "FlowStatus",
    "generate_files", "get_dag_info", "get_airflow_params", "run_airflow_task",
]

if TYPE_CHECKING:
    from taskyard.workflows.airflow import generate_files, get_airflow_params, get_dag_info, run_airflow_task
    from taskyard.workflows.dag import FlowError, parse
    from taskyard.workflows.models import FlowStatus
    from taskyard.workflows.runs import FlowRun, run, test_tasks


def __getattr__(name: str) -> object:
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskyard.workflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
