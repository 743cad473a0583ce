"""A flow run drawn: its DAG laid out in columns by depth (an SVG), and a Gantt chart of its tasks' times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from taskyard.server.webui.render import tone
from taskyard.status import TaskStatus
from taskyard.workflows.models import FlowInfo, FlowTaskInfo

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 170, 36, 60, 18, 10
FLOW_TONES = {"Waiting": "waiting", "Cancelled": "warn", "Upstream Failed": "bad"}


@dataclass(frozen=True)
class Node:
    name: str
    state: str
    tone: str
    task_id: str | None
    x: int
    y: int


@dataclass(frozen=True)
class Bar:
    name: str
    tone: str
    left: float  # percent of the run's span
    width: float
    seconds: float


def state_tone(state: str) -> str:
    """The colour of a flow task's state: its task's status colour, or that of the flow's own states."""
    if state in FLOW_TONES:
        return FLOW_TONES[state]
    try:
        return tone(TaskStatus.from_alias(state))
    except ValueError:
        return "waiting"


def depths(tasks: list[FlowTaskInfo]) -> dict[str, int]:
    """Each task's column: 0 for a task with no upstream, else one more than its deepest upstream."""
    upstream = {task.name: task.upstream for task in tasks}
    found: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in found:
            found[name] = 1 + max((depth(up) for up in upstream.get(name, [])), default=-1)
        return found[name]

    for task in tasks:
        depth(task.name)
    return found


def layout(flow: FlowInfo) -> tuple[list[Node], list[str], tuple[int, int]]:
    """The nodes, the edges (SVG path data), and the drawing's (width, height)."""
    columns: dict[int, int] = {}
    places = {}
    nodes = []
    column_of = depths(flow.tasks)
    for task in flow.tasks:
        column = column_of[task.name]
        row = columns.get(column, 0)
        columns[column] = row + 1
        x, y = MARGIN + column * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y)
        places[task.name] = (x, y)
        nodes.append(Node(task.name, task.state, state_tone(task.state), task.task_id, x, y))
    edges = [_edge(places[up], places[task.name]) for task in flow.tasks for up in task.upstream if up in places]
    width = MARGIN * 2 + max(columns, default=0) * (BOX_W + GAP_X) + BOX_W
    height = MARGIN * 2 + max(columns.values(), default=1) * (BOX_H + GAP_Y) - GAP_Y
    return nodes, edges, (width, height)


def _edge(start: tuple[int, int], end: tuple[int, int]) -> str:
    x1, y1 = start[0] + BOX_W, start[1] + BOX_H // 2
    x2, y2 = end[0] - 4, end[1] + BOX_H // 2
    middle = (x1 + x2) // 2
    return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"


def gantt(flow: FlowInfo, now: datetime) -> list[Bar]:
    """One bar per task that has started, placed on the span from the first start to the last end."""
    started = [task for task in flow.tasks if task.started_at is not None]
    if not started:
        return []
    first = min(task.started_at for task in started if task.started_at)
    last = max((task.finished_at or now) for task in started)
    span = max((last - first).total_seconds(), 1e-6)
    bars = []
    for task in started:
        assert task.started_at is not None
        begin = (task.started_at - first).total_seconds()
        length = ((task.finished_at or now) - task.started_at).total_seconds()
        bars.append(Bar(task.name, state_tone(task.state), 100 * begin / span, max(0.5, 100 * length / span), length))
    return bars
