"""Flow runs: the list, and one run drawn as a graph of its tasks' states and a Gantt chart of their times."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from taskyard.server.db.models import UserRow
from taskyard.server.flows import service as flow_service
from taskyard.server.webui import graph, render
from taskyard.server.webui.auth import page_user

router = APIRouter()
PageUser = Annotated[UserRow, Depends(page_user)]


@router.get("/flows")
def flow_list(request: Request, user: PageUser) -> Response:
    with request.app.state.plane.transaction() as session:
        runs = [flow_service.to_info(session, run) for run in flow_service.list_runs(session, user, limit=100)]
    return render.page(request, "flows.html", user, runs=runs)


@router.get("/flows/{run_id}")
def flow_page(run_id: str, request: Request, user: PageUser) -> Response:
    with request.app.state.plane.transaction() as session:
        flow = flow_service.to_info(session, flow_service.get_run(session, user, run_id))
    nodes, edges, size = graph.layout(flow)
    return render.page(
        request,
        "flow.html",
        user,
        flow=flow,
        nodes=nodes,
        edges=edges,
        size=size,
        bars=graph.gantt(flow, render.utcnow()),
        box=(graph.BOX_W, graph.BOX_H),
    )
