"""A ``.ipynb`` task: what its spec carries to the worker, and the runner that executes it there.

The agent runs a notebook task as ``<task python> -u -m taskyard.notebook_task NOTEBOOK`` in the
task's folder, like a ``.py`` task, so papermill runs in the task's process, never in the agent.
Its parameters come as JSON in ``TASKYARD_NOTEBOOK_PARAMETERS`` (the environment, not argv; at most
``PARAMETERS_MAX`` bytes, checked at submit) and its per-cell timeout, in seconds, in
``TASKYARD_NOTEBOOK_EXECUTION_TIMEOUT``. The runner executes the notebook with
:func:`taskyard.notebooks.execute_notebook` (the task's Python needs ``taskyard[notebooks]``): each
cell's output goes to the task's log as it runs, the executed notebook is saved as
``<name>_output.ipynb`` in ``$TASKYARD_OUTPUT_DIR``, and a failing cell ends it with exit code 1.

Nothing here imports papermill at import time: the server and the SDK use the checks below.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PARAMETERS_ENV = "TASKYARD_NOTEBOOK_PARAMETERS"
TIMEOUT_ENV = "TASKYARD_NOTEBOOK_EXECUTION_TIMEOUT"
PARAMETERS_MAX = 64 * 1024  # bytes of JSON: an environment variable holds 128 KiB at most
SUFFIX = ".ipynb"
SCRIPT_SUFFIX = ".py"  # run as a notebook: jupytext's percent format, one cell from each "# %%"


def check_parameters(parameters: dict | None) -> dict | None:
    """``parameters`` if every name is a Python identifier and all of them fit in ``PARAMETERS_MAX``
    bytes of JSON; else ValueError saying which name or how large."""
    if parameters is None:
        return None
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"parameter name {name!r} must be a Python identifier (letters, digits, '_')")
    size = len(_encode(parameters))
    if size > PARAMETERS_MAX:
        raise ValueError(f"parameters take {size} bytes as JSON; at most {PARAMETERS_MAX} are allowed")
    return parameters


def check_notebook(path: Path) -> None:
    """Raise ValueError unless ``path`` holds a Jupyter notebook: a JSON object of nbformat 4 or later
    with a list of cells (the check needs no third-party package)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} is not a notebook: it is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError(f"{path.name} is not a notebook: it has no list of cells")
    version = data.get("nbformat")
    if not isinstance(version, int) or version < 4:
        raise ValueError(f"{path.name} is not a notebook of nbformat 4 or later (nbformat: {version!r})")


def task_env(parameters: dict | None, execution_timeout: float | None) -> dict[str, str]:
    """The environment variables that carry a notebook task's options to its runner."""
    env = {PARAMETERS_ENV: _encode(parameters)} if parameters else {}
    if execution_timeout is not None:
        env[TIMEOUT_ENV] = str(execution_timeout)
    return env


def _encode(parameters: dict) -> str:
    return json.dumps(parameters, separators=(",", ":"))


def options_from_env(env: dict[str, str]) -> tuple[dict, float | None]:
    """``(parameters, execution_timeout)`` as :func:`task_env` wrote them."""
    parameters = json.loads(env.get(PARAMETERS_ENV) or "{}")
    timeout = env.get(TIMEOUT_ENV)
    return parameters, float(timeout) if timeout else None


def main(argv: list[str]) -> int:
    """Execute the notebook ``argv[0]`` (a ``.py`` in jupytext's percent format is made one first);
    0 if every cell ran, 1 if one failed, 2 on bad usage."""
    if len(argv) != 1:
        print("usage: python -m taskyard.notebook_task NOTEBOOK", file=sys.stderr)
        return 2
    from taskyard import notebooks

    parameters, timeout = options_from_env(dict(os.environ))
    source = argv[0]
    if source.endswith(SCRIPT_SUFFIX):
        import tempfile

        source = str(notebooks.notebook_of_script(Path(source), Path(tempfile.mkdtemp(prefix="taskyard-"))))
    return 0 if notebooks.execute_notebook(source, parameters, execution_timeout=timeout) else 1  # None: no limit


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
