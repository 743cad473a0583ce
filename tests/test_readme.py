"""The README's first example runs as written, from the repository root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def first_python_example() -> str:
    return re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)


def test_first_example_runs_from_the_repository_root(server):
    code = first_python_example() + "assert success\n"
    env = {**os.environ, "TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Hello from simple task 1" in done.stdout


def test_time_limit_examples_name_files_that_exist():
    text = (ROOT / "README.md").read_text()
    section = text.split("### Time limits, retries, pools", 1)[1].split("```", 2)[1]
    for name, folder in re.findall(r'submit\("([^"]+)", files_path="([^"]+)"', section):
        assert (ROOT / folder / name).is_file(), name
