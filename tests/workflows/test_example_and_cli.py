"""examples/workflow on the built-in runner, through the CLI and test_tasks."""

from __future__ import annotations

from taskyard import workflows
from taskyard.cli import app
from taskyard.workflows import FlowRun

from support import EXAMPLES, wait_for, write

FAN_IN = "[process_table_1, process_table_2] >> process_final_table"
FINAL = "id,city,sales\r\n1,ISTANBUL,1200\r\n2,ANKARA,800\r\n3,IZMIR,450\r\n"


def test_flow_run_of_the_example_and_its_show_list_logs(cli, tmp_path):
    result = cli.invoke(app, ["flow", "run", str(EXAMPLES / "workflow"), "--flow", FAN_IN])
    assert result.exit_code == 0, result.output
    run_id = result.stderr.splitlines()[0].split()[2]
    for line in ("process_table_1: Success", "process_final_table: Waiting", "process_final_table: Success",
                 f"flow run {run_id}: Success"):
        assert line in result.stderr
    assert "process_final_table" in result.stdout and "process_table_1, process_table_2" in result.stdout
    flow = FlowRun(run_id)
    flow.tasks["process_final_table"].download_outputs(output_dir=tmp_path)
    assert (tmp_path / "final_table.csv").read_bytes().decode() == FINAL

    listed = cli.invoke(app, ["flow", "list"])
    assert run_id in listed.stdout and "3/3 succeeded" in listed.stdout
    shown = cli.invoke(app, ["flow", "show", run_id])
    assert "Success" in shown.stdout and FAN_IN in shown.stdout
    logs = cli.invoke(app, ["flow", "logs", run_id, "process_final_table"])
    assert logs.exit_code == 0 and "1 ISTANBUL 1200" in logs.stdout
    missing = cli.invoke(app, ["flow", "logs", run_id, "nope"])
    assert missing.exit_code == 5 and "task 'nope' of flow run" in missing.stderr


def test_flow_run_of_a_failing_flow_exits_1_and_rerun_and_kill(cli, tmp_path, readable_dir):
    flag = readable_dir / "ok"
    write(tmp_path, "first.sh", "echo first\n")
    write(tmp_path, "second.py", f"import os, sys\nsys.exit(0 if os.path.exists({str(flag)!r}) else 4)\n")
    failed = cli.invoke(app, ["flow", "run", str(tmp_path), "--flow", "first >> second"])
    assert failed.exit_code == 1
    assert "second: Failed" in failed.stderr and "1 of 2 tasks did not succeed" in failed.stderr
    run_id = failed.stderr.splitlines()[0].split()[2]
    flag.write_text("")
    again = cli.invoke(app, ["flow", "rerun", run_id])
    assert again.exit_code == 0, again.output
    assert "Success (reused)" in again.stdout
    write(tmp_path, "slow.sh", "sleep 60\n")
    detached = cli.invoke(app, ["flow", "run", str(tmp_path), "--flow", "slow >> first", "--detach"])
    killed = cli.invoke(app, ["flow", "kill", detached.stdout.strip()])
    assert killed.exit_code == 0 and killed.stdout.strip() == "Killed"


def test_flow_run_refuses_a_bad_flow_with_its_place(cli):
    result = cli.invoke(app, ["flow", "run", str(EXAMPLES / "workflow"), "--flow", "process_table_1 >> [oops]"])
    assert result.exit_code == 2
    assert "error: flow line 1, column 21: no task file for 'oops'" in result.stderr


def test_test_tasks_runs_the_example_one_task_after_another(sdk_env, capsys):
    assert workflows.test_tasks(FAN_IN, EXAMPLES / "workflow") == {
        "process_table_1": True, "process_table_2": True, "process_final_table": True,
    }
    out = capsys.readouterr().out
    assert "wrote 3 rows to table_1.csv" in out and "3 IZMIR 450" in out
    def only_warm_ones_live() -> bool:  # their workers are terminated after success, a moment later
        live = [w for w in sdk_env.client.workers() if w.status.value not in ("terminated", "failed")]
        return all(w.user is None for w in live)

    wait_for(only_warm_ones_live, timeout=20)


def test_the_live_view_puts_each_task_one_column_after_its_upstream():
    from datetime import datetime, timezone

    from rich.console import Console

    from taskyard.cli.flows import dag_view
    from taskyard.workflows.models import FlowInfo, FlowStatus, FlowTaskInfo

    def task(name, upstream, state, attempt=1):
        return FlowTaskInfo(name=name, file_name=f"{name}.py", upstream=upstream, state=state, attempt=attempt)

    info = FlowInfo(id="r1", status=FlowStatus.RUNNING, alias="Running", dag_flow="a >> [b, c] >> d", user="u",
                    created_at=datetime.now(timezone.utc),
                    tasks=[task("a", [], "Success"), task("b", ["a"], "In Progress", 2), task("c", ["a"], "Waiting"),
                           task("d", ["b", "c"], "Waiting")])
    console = Console(width=120, record=True)
    console.print(dag_view(info))
    lines = console.export_text().splitlines()
    assert "flow run r1: Running" in lines[0] and "then (2)" in lines[1]
    row = next(line for line in lines if "● a" in line)
    assert row.index("● a") < row.index("● b  In Progress (attempt 2)") < row.index("● d  Waiting")
    assert any("● c  Waiting" in line for line in lines)


def test_the_readme_workflow_example_runs_from_the_repository_root(server, tmp_path):
    import os
    import re
    import subprocess
    import sys

    root = EXAMPLES.parent
    section = (root / "README.md").read_text().split("## Workflows", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('output_dir="out"', f'output_dir="{tmp_path}"')
    env = {**os.environ, "TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "FlowStatus.SUCCESS" in done.stdout and "'process_final_table': 'Success'" in done.stdout
    assert (tmp_path / "final_table.csv").is_file()
