"""The built-in runner: flow runs owned and advanced by the control plane, with real workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taskyard.errors import InvalidInput
from taskyard.workflows import FlowRun, run
from taskyard.workflows.dag import FlowError
from taskyard.workflows.models import FlowStatus

from support import Server, write

FAN_IN = "[process_table_1, process_table_2] >> process_final_table"
TABLE = """import os, time
time.sleep({sleep})
with open(os.path.join(os.environ["TASKYARD_OUTPUT_DIR"], "{name}.csv"), "w") as out:
    out.write("id,{name}\\n1,{value}\\n")
print("wrote {name}")
"""
FINAL = """import os
rows = []
for name in ("table_1", "table_2"):
    with open(os.path.join("inputs", "process_" + name, name + ".csv")) as f:
        rows.append(f.read().splitlines()[1].split(",")[1])
with open(os.path.join(os.environ["TASKYARD_OUTPUT_DIR"], "final.csv"), "w") as out:
    out.write("id,table_1,table_2\\n1," + ",".join(rows) + "\\n")
print("joined", rows)
"""


def fan_in_folder(folder: Path, sleep: float = 0.5) -> Path:
    write(folder, "process_table_1.py", TABLE.format(name="table_1", value="a", sleep=sleep))
    write(folder, "process_table_2.py", TABLE.format(name="table_2", value="b", sleep=sleep))
    write(folder, "process_final_table.py", FINAL)
    return folder


def test_fan_in_runs_in_parallel_and_passes_outputs_downstream(any_server, tmp_path):
    flow = run(fan_in_folder(tmp_path, sleep=1.5), FAN_IN, client=any_server.client)
    assert flow.wait(timeout=120) is FlowStatus.SUCCESS
    assert flow.states == {name: "Success" for name in ("process_table_1", "process_table_2", "process_final_table")}
    info = {task.name: task for task in flow.info.tasks}
    one, two, final = (info[n] for n in ("process_table_1", "process_table_2", "process_final_table"))
    assert one.started_at < two.finished_at and two.started_at < one.finished_at  # they ran side by side
    assert final.started_at >= max(one.finished_at, two.finished_at)
    assert final.upstream == ["process_table_1", "process_table_2"] and final.attempt == 1
    task = flow.tasks["process_final_table"]
    task.download_outputs(output_dir=tmp_path / "out")
    assert (tmp_path / "out" / "final.csv").read_text() == "id,table_1,table_2\n1,a,b\n"
    assert "joined ['a', 'b']" in task.logs()
    assert FlowRun(flow.id, client=any_server.client).status is FlowStatus.SUCCESS  # re-attached


def test_max_parallel_one_runs_them_one_at_a_time(server, tmp_path):
    flow = run(fan_in_folder(tmp_path), FAN_IN, max_parallel=1, client=server.client)
    assert flow.wait(timeout=120) is FlowStatus.SUCCESS
    tasks = sorted(flow.info.tasks, key=lambda t: t.started_at)
    for before, after in zip(tasks, tasks[1:]):
        assert after.started_at >= before.finished_at


def test_a_failure_fails_its_downstream_and_lets_other_branches_finish(server, tmp_path):
    write(tmp_path, "broken.py", "raise SystemExit(3)\n")
    write(tmp_path, "after_broken.sh", "echo never\n")
    write(tmp_path, "last.sh", "echo never either\n")
    write(tmp_path, "fine.py", "import time; time.sleep(1); print('fine')\n")
    flow = run(tmp_path, "broken >> after_broken >> last\nfine", client=server.client)
    assert flow.wait(timeout=120) is FlowStatus.FAILED
    assert flow.states == {"broken": "Failed", "after_broken": "Upstream Failed", "last": "Upstream Failed",
                           "fine": "Success"}
    info = flow.info
    assert info.reason == "3 of 4 tasks did not succeed"
    assert set(flow.tasks) == {"broken", "fine"}  # the others never started
    assert {t.name: t.reason for t in info.tasks}["after_broken"] == "upstream task broken failed"


def test_retries_run_a_failed_task_again(server, tmp_path):
    # Its first attempt fails (the task id ends with the attempt), the second succeeds.
    write(tmp_path, "flaky.py", "import os, sys\nsys.exit(1 if os.environ['TASKYARD_TASK_ID'].endswith('-1') else 0)\n")
    write(tmp_path, "then.sh", "echo then\n")
    flow = run(tmp_path, "flaky >> then", retries=1, client=server.client)
    assert flow.wait(timeout=120) is FlowStatus.SUCCESS
    info = {t.name: t for t in flow.info.tasks}
    assert info["flaky"].attempt == 2 and info["then"].attempt == 1
    assert flow.tasks["flaky"].id.endswith("-2")
    failing = run(tmp_path, "flaky >> then", client=server.client)  # no retries: it fails
    assert failing.wait(timeout=120) is FlowStatus.FAILED
    assert failing.states == {"flaky": "Failed", "then": "Upstream Failed"}


def test_kill_kills_running_tasks_and_cancels_the_rest(server, tmp_path):
    write(tmp_path, "slow.py", "import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    write(tmp_path, "after.sh", "echo never\n")
    flow = run(tmp_path, "slow >> after", client=server.client)
    slow = None
    for info in flow.follow(timeout=60):
        slow = next(t for t in info.tasks if t.name == "slow")
        if slow.state == "In Progress":
            break
    assert slow is not None and slow.state == "In Progress"
    assert flow.kill(timeout=60) is FlowStatus.KILLED
    assert flow.states == {"slow": "Killed", "after": "Cancelled"}


def test_rerun_runs_only_what_did_not_succeed_and_reuses_the_rest(server, tmp_path, readable_dir):
    flag = readable_dir / "go"
    write(tmp_path, "make.py", "import os\nopen(os.environ['TASKYARD_OUTPUT_DIR'] + '/made.txt', 'w').write('made')\n")
    write(tmp_path, "use.py", f"import sys\nif not open('inputs/make/made.txt').read() == 'made': sys.exit(2)\n"
                              f"sys.exit(0 if __import__('os').path.exists({str(flag)!r}) else 1)\n")
    first = run(tmp_path, "make >> use", client=server.client)
    assert first.wait(timeout=120) is FlowStatus.FAILED
    assert first.states == {"make": "Success", "use": "Failed"}
    flag.write_text("")
    second = first.rerun()
    assert second.id != first.id and second.info.rerun_of == first.id
    assert second.wait(timeout=120) is FlowStatus.SUCCESS
    before, after = first.tasks, second.tasks
    assert after["make"].id == before["make"].id  # reused, not run again
    assert after["use"].id != before["use"].id
    assert {t.name: t.reused for t in second.info.tasks} == {"make": True, "use": False}


def test_bad_flows_are_refused_before_anything_runs(server, tmp_path):
    write(tmp_path, "a.py", "")
    write(tmp_path, "a.sh", "")
    write(tmp_path, "b.py", "")
    with pytest.raises(FlowError, match="ambiguous"):
        run(tmp_path, "a >> b", client=server.client)
    with pytest.raises(FlowError, match="cycle"):
        run(tmp_path, "b >> b", client=server.client)
    body = {"dag_flow": "b >> c", "task_files": {"b": "b.py", "c": "c.py"}, "bundle_sha256": "0" * 64,
            "bundle_size": 1}
    body["dag_flow"] = "b >> [c"
    with pytest.raises(InvalidInput, match="flow line 1, column 8: expected .,. or .]."):
        server.client.request("POST", "/flows", json=body)
    body["dag_flow"] = "b >> c >> d"
    with pytest.raises(InvalidInput, match="no task file for 'd'"):
        server.client.request("POST", "/flows", json=body)


SUBMIT_AND_EXIT = """
import sys
from taskyard.client import Client
from taskyard.workflows import run
print(run(sys.argv[1], "slow >> done", client=Client(sys.argv[2], sys.argv[3])).id)
"""


def test_a_run_goes_on_after_its_client_exits_and_over_a_server_restart(fresh_server: Server, tmp_path):
    write(tmp_path / "flow", "slow.py", "import time\ntime.sleep(4)\nprint('slept')\n")
    write(tmp_path / "flow", "done.sh", "echo done\n")
    submitted = subprocess.run(
        [sys.executable, "-c", SUBMIT_AND_EXIT, str(tmp_path / "flow"), fresh_server.url, fresh_server.token],
        capture_output=True, text=True, check=True, timeout=60,
    )
    run_id = submitted.stdout.strip()
    flow = FlowRun(run_id, client=fresh_server.client)
    for info in flow.follow(timeout=30):
        if info.tasks[0].state == "In Progress":
            break
    fresh_server.kill9()
    fresh_server.start()
    flow = FlowRun(run_id, client=fresh_server.client)
    assert flow.wait(timeout=120) is FlowStatus.SUCCESS
    assert flow.states == {"slow": "Success", "done": "Success"}


def test_a_run_is_its_owner_and_an_admin_rerun_stays_the_owner(server, tmp_path):
    import secrets

    from taskyard.errors import NotFound

    bob = server.user_client("bob-" + secrets.token_hex(3))
    carol = server.user_client("carol-" + secrets.token_hex(3))
    write(tmp_path, "first.sh", "echo one\n")
    write(tmp_path, "second.sh", "echo two\n")
    flow = run(tmp_path, "first >> second", client=bob)
    assert flow.wait(timeout=120) is FlowStatus.SUCCESS
    with pytest.raises(NotFound):
        FlowRun(flow.id, client=carol)
    again = FlowRun(flow.id, client=server.client).rerun()  # the admin's
    assert again.wait(timeout=60) is FlowStatus.SUCCESS
    assert again.info.user == flow.info.user
    assert all(task.reused for task in again.info.tasks)
