"""Notebooks executed with papermill, with the Practicus AI names: ``taskyard.notebooks.execute_notebook(...)``.

Use it inside a task (``import taskyard as prt; prt.notebooks.execute_notebook("report")``) or
anywhere papermill is installed (``pip install 'taskyard[notebooks]'``). Every notebook runs on the
``python3`` kernel of the calling interpreter unless ``kernel_name`` names another, so no kernelspec
has to be installed. Each cell's output is printed as it runs; the executed notebook is saved as
``<name>_output.ipynb`` in the task's output folder (``$TASKYARD_OUTPUT_DIR``; outside a task, next
to the notebook), whether it failed or not. The names of the notebooks run in this process are kept
in :data:`successful_notebooks` and :data:`failed_notebooks`; :func:`validate_history` raises if
any failed.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from taskyard.errors import TaskError
from taskyard.notebook_task import SUFFIX

DEFAULT_KERNEL = "python3"
# No IPython history database: a notebook run has no use for it, and a task's fresh home would pay
# for making one (about a second) at every run.
KERNEL_OPTIONS = ("--HistoryManager.enabled=False",)
OUTPUT_SUFFIX = "_output"

successful_notebooks: list[str] = []  # paths of the notebooks that ran to the end, in order
failed_notebooks: list[str] = []  # paths of the notebooks that failed, in order


class NotebookFailed(TaskError):
    """A notebook run in this process failed (raised by :func:`validate_history`)."""

    code = "notebook_failed"


@dataclass
class _Defaults:
    output_folder: str | None = None
    failed_output_folder: str | None = None
    add_time_stamp: bool = False


_defaults = _Defaults()


def configure(
    default_output_folder: str | None = None,
    default_failed_output_folder: str | None = None,
    add_time_stamp_to_output: bool = False,
) -> None:
    """Set where output notebooks go when a call names no path (None: the task's output folder; the
    failed folder defaults to the output one) and whether their names end with a time stamp."""
    _defaults.output_folder = default_output_folder
    _defaults.failed_output_folder = default_failed_output_folder
    _defaults.add_time_stamp = add_time_stamp_to_output


def execute_notebook(
    input_path: str,
    parameters: dict | None = None,
    cwd: str | None = None,
    kernel_name: str | None = None,
    output_path: str | None = None,
    failed_output_path: str | None = None,
    raise_on_failure: bool = False,
    **papermill_kwargs,
) -> bool:
    """Execute a notebook (``"report"`` means ``report.ipynb``) and return True if every cell ran.

    ``parameters`` are injected after the cell tagged ``parameters`` (first, when none is). The
    executed notebook is saved at ``output_path`` (default: ``<name>_output.ipynb`` in the output
    folder), or at ``failed_output_path`` if a cell failed. A failure prints the failing cell's
    error and traceback to stderr, then returns False, or raises papermill's error with
    ``raise_on_failure``. Other keyword arguments (``execution_timeout``, ``start_timeout``...) go to
    ``papermill.execute_notebook``.
    """
    source = _notebook_path(input_path)
    output = Path(output_path) if output_path else _output_path(source, _defaults.output_folder)
    try:
        _papermill(source, output, parameters, cwd, kernel_name, papermill_kwargs)
    except Exception as exc:
        failed_notebooks.append(str(source))
        _move(output, Path(failed_output_path) if failed_output_path else _failed_path(source, output))
        _print_failure(source, exc)
        if raise_on_failure:
            raise
        return False
    successful_notebooks.append(str(source))
    return True


def execute_notebooks(start_dir: str | None = None, parameters: dict | None = None, raise_on_failure: bool = False,
                      **kwargs) -> bool:
    """Execute every notebook under ``start_dir`` (default: the current folder), in path order, skipping
    output notebooks and checkpoints; True if all ran. Keyword arguments are those of :func:`execute_notebook`."""
    results = [
        execute_notebook(str(path), parameters=parameters, raise_on_failure=raise_on_failure, **kwargs)
        for path in find_notebooks(Path(start_dir or "."))
    ]
    return all(results)


def find_notebooks(folder: Path) -> list[Path]:
    """The notebooks under ``folder`` that are not outputs (``*_output*.ipynb``) or checkpoints, sorted."""
    found = sorted(folder.rglob(f"*{SUFFIX}"))
    return [path for path in found if ".ipynb_checkpoints" not in path.parts and not _is_output(path)]


def _is_output(path: Path) -> bool:
    return re.search(rf"{OUTPUT_SUFFIX}(_\d{{8}}_\d{{6}})?$", path.stem) is not None


def validate_history() -> None:
    """Raise :class:`NotebookFailed` naming the notebooks that failed in this process, if any did."""
    if failed_notebooks:
        names = ", ".join(failed_notebooks)
        raise NotebookFailed(f"{len(failed_notebooks)} notebook(s) failed: {names}")


def notebook_of_script(script: Path, folder: Path) -> Path:
    """The notebook of a ``.py`` script in jupytext's percent format (a cell from each ``# %%`` line; a
    ``# %% tags=["parameters"]`` cell takes the parameters), written as ``<name>.ipynb`` in ``folder``."""
    try:
        with quick_jsonschema():
            import jupytext
    except ImportError:
        raise TaskError("running a .py as a notebook needs jupytext: pip install 'taskyard[notebooks]'") from None
    target = folder / f"{script.stem}{SUFFIX}"
    jupytext.write(jupytext.read(script, fmt="py:percent"), target, fmt="ipynb")
    return target


def _notebook_path(input_path: str) -> Path:
    """``input_path``, or with ``.ipynb`` added when it has no suffix and only that form exists."""
    path = Path(input_path)
    if path.suffix != SUFFIX and not path.exists():
        return path.with_name(path.name + SUFFIX)
    return path


def _output_path(source: Path, folder: str | None) -> Path:
    """``<name>_output[_<stamp>].ipynb`` in ``folder``, else the task's output folder, else beside ``source``."""
    where = folder or os.environ.get("TASKYARD_OUTPUT_DIR") or str(source.parent)
    stamp = time.strftime("_%Y%m%d_%H%M%S") if _defaults.add_time_stamp else ""
    return Path(where) / f"{source.stem}{OUTPUT_SUFFIX}{stamp}{SUFFIX}"


def _failed_path(source: Path, output: Path) -> Path:
    folder = _defaults.failed_output_folder
    return _output_path(source, folder) if folder else output


def _move(output: Path, target: Path) -> None:
    if target != output and output.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        output.replace(target)


def _papermill(source: Path, output: Path, parameters: dict | None, cwd: str | None, kernel_name: str | None,
               kwargs: dict) -> None:
    """Run papermill with the task's defaults: named kernel, no progress bar, cell output to our streams."""
    with quick_jsonschema():
        import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    kernel = kernel_name or DEFAULT_KERNEL
    options = {"progress_bar": False, "stdout_file": sys.stdout, "stderr_file": sys.stderr, **kwargs}
    if kernel == DEFAULT_KERNEL:
        options.setdefault("language", "python")
        options.setdefault("kernel_manager_class", _kernel_manager_class())
    papermill.execute_notebook(str(source), str(output), parameters=parameters or {}, cwd=cwd, kernel_name=kernel,
                               **options)


@contextlib.contextmanager
def quick_jsonschema() -> Iterator[None]:
    """Import what imports nbformat (papermill, jupytext) without jsonschema's IRI format checker.

    jsonschema loads ``rfc3987_syntax`` when it is installed (jupyter-server brings it), and that
    builds a grammar at import: seconds on every notebook run, for a check no notebook schema
    makes. It is held back only while jsonschema is first imported; a later import of it works."""
    hold = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if hold:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # "not installed", for this import
    try:
        yield
    finally:
        if hold and sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]


def _kernel_manager_class() -> type:
    """A kernel manager that starts the ``python3`` kernel with this interpreter, whatever kernelspecs exist."""
    from jupyter_client.manager import AsyncKernelManager

    class TaskKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file, *KERNEL_OPTIONS,
                    *(extra_arguments or [])]

    return TaskKernelManager


def _print_failure(source: Path, exc: BaseException) -> None:
    """The failing cell's error name, message and traceback (or the error itself), on stderr."""
    lines = [f"Notebook {source} failed"]
    if hasattr(exc, "ename") and hasattr(exc, "traceback"):
        lines[0] += f' at cell "In [{getattr(exc, "exec_count", "?")}]": {exc.ename}: {getattr(exc, "evalue", "")}'
        lines += [_strip_color(line) for line in exc.traceback]
    else:
        lines[0] += f": {type(exc).__name__}: {exc}"
    print("\n".join(lines), file=sys.stderr, flush=True)


def _strip_color(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


__all__ = [
    "NotebookFailed",
    "configure",
    "execute_notebook",
    "execute_notebooks",
    "failed_notebooks",
    "successful_notebooks",
    "validate_history",
]
