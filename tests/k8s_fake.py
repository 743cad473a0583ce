"""A small Kubernetes API server on 127.0.0.1: the core/v1 pod, secret and node paths the official client calls.

It keeps objects in memory, records every request (method, path, query, body), and lets a test
set a pod's status as a kubelet or the scheduler would (:meth:`FakeCluster.set_status`), or have
the next pods made left Pending as a full cluster's scheduler leaves them
(:attr:`FakeCluster.unschedulable`). A PATCH may add owner references (any metadata) and lower a
pod's ``spec.activeDeadlineSeconds``, which its kubelet then keeps to, as a real one does.

Run as a program, it serves until killed, for what runs in a process of its own (a test suite
pointed at it as at a real cluster)::

    python tests/k8s_fake.py --kubeconfig F --kubelet-root D

starts the server with a kubelet running pods' agents in folders under ``D`` and writes a
kubeconfig naming it to ``F``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
from kubernetes import client as k8s

from k8s_kubelet import Kubelet

K8S_VERSION = "1.37.0"  # the schemas objects are checked against


@dataclass
class Request:
    method: str
    path: str
    query: dict
    body: dict | None


@dataclass
class FakeCluster:
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (kind, namespace, name) -> object
    nodes: set[str] = field(default_factory=lambda: {"node-1"})
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    kubelet: Kubelet | None = None  # None: pods stay Pending until a test sets their status
    # The scheduler's messages for the next pods made, one each: such a pod stays Pending, PodScheduled False
    unschedulable: list[str] = field(default_factory=list)

    def set_status(self, namespace: str, name: str, **status) -> None:
        with self.lock:
            self.objects[("pods", namespace, name)]["status"] = status

    def place(self, namespace: str, name: str) -> None:
        """The scheduler finds a node for a pod it had left unschedulable: the kubelet starts it."""
        assert self.kubelet is not None
        self.kubelet.start(namespace, self.objects[("pods", namespace, name)])

    def calls(self, method: str, kind: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and f"/{kind}" in r.path]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, str | None, str | None]:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")  # api v1 namespaces NS KIND [NAME] | api v1 nodes NAME
        body = self._body()
        self.cluster.requests.append(Request(self.command, url.path, parse_qs(url.query), body))
        self._request_body = body
        if parts[2] == "nodes":
            return "nodes", None, parts[3]
        return parts[4], parts[3], parts[5] if len(parts) > 5 else None

    def _missing(self, kind: str, name: str | None) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                         "code": 404, "message": f'{kind} "{name}" not found'})

    def do_GET(self) -> None:
        kind, namespace, name = self._route()
        if kind == "nodes":
            if name in self.cluster.nodes:
                return self._send(200, {"kind": "Node", "apiVersion": "v1", "metadata": {"name": name}})
            return self._missing(kind, name)
        if name is None:
            return self._send(200, self._list(kind, namespace))
        found = self.cluster.objects.get((kind, namespace, name))
        return self._send(200, found) if found else self._missing(kind, name)

    def _list(self, kind: str, namespace: str | None) -> dict:
        query = parse_qs(urlparse(self.path).query)
        wanted = dict(pair.split("=", 1) for pair in query.get("labelSelector", [""])[0].split(",") if pair)
        items = [obj for (k, ns, _), obj in self.cluster.objects.items() if k == kind and ns == namespace
                 and all(obj["metadata"].get("labels", {}).get(key) == value for key, value in wanted.items())]
        return {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}

    def do_POST(self) -> None:
        kind, namespace, _ = self._route()
        obj = self._request_body or {}
        try:  # as an API server refuses what its schemas do not allow: every manifest made is checked
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return self._send(422, {"kind": "Status", "apiVersion": "v1", "code": 422, "reason": "Invalid",
                                    "message": str(exc)})
        meta = obj.setdefault("metadata", {})
        key = (kind, namespace, meta["name"])
        if key in self.cluster.objects:
            return self._send(409, {"kind": "Status", "apiVersion": "v1", "code": 409, "reason": "AlreadyExists"})
        meta.update(uid=str(uuid.uuid4()), namespace=namespace, creationTimestamp=_now())
        placed = kind == "pods" and not self._left_unscheduled(obj)
        self.cluster.objects[key] = obj
        self._send(201, obj)
        if placed and self.cluster.kubelet is not None:
            self.cluster.kubelet.start(namespace, obj)

    def _left_unscheduled(self, pod: dict) -> bool:
        """A new pod is Pending; with a message in ``unschedulable``, the scheduler has said it cannot place it."""
        pod["status"] = {"phase": "Pending"}
        with self.cluster.lock:
            message = self.cluster.unschedulable.pop(0) if self.cluster.unschedulable else None
        if message is not None:
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                            "message": message, "lastTransitionTime": _now()}]
        return message is not None

    def do_PATCH(self) -> None:
        kind, namespace, name = self._route()
        found = self.cluster.objects.get((kind, namespace, name))
        if found is None:
            return self._missing(kind, name)
        patch = self._request_body or {}
        refused = _refused_spec_change(kind, found, patch.get("spec"))
        if refused is not None:
            return self._send(422, {"kind": "Status", "apiVersion": "v1", "code": 422, "reason": "Invalid",
                                    "message": refused})
        found["metadata"].update(patch.get("metadata", {}))
        found.get("spec", {}).update(patch.get("spec", {}))  # the kubelet reads the new deadline on its next look
        return self._send(200, found)

    def do_DELETE(self) -> None:
        kind, namespace, name = self._route()
        found = self.cluster.objects.get((kind, namespace, name))
        if found is None:
            return self._missing(kind, name)
        if kind == "pods" and found["metadata"].get("deletionTimestamp"):
            return self._send(200, found)  # already going
        if kind == "pods" and self.cluster.kubelet is not None:
            grace = int(parse_qs(urlparse(self.path).query).get("gracePeriodSeconds", ["30"])[0])
            found["metadata"]["deletionTimestamp"] = _now()
            threading.Thread(target=self._stop_then_remove, args=(found, grace), daemon=True).start()
            return self._send(200, found)
        self.cluster.objects.pop((kind, namespace, name), None)
        self._collect_owned(kind, found)
        return self._send(200, found if kind == "pods" else {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def _stop_then_remove(self, pod: dict, grace: int) -> None:
        assert self.cluster.kubelet is not None
        self.cluster.kubelet.stop(pod, grace)
        meta = pod["metadata"]
        self.cluster.objects.pop(("pods", meta["namespace"], meta["name"]), None)
        self._collect_owned("pods", pod)

    def _collect_owned(self, kind: str, found: dict) -> None:
        if kind == "pods":  # what the garbage collector does with what the pod owns
            uid = found["metadata"]["uid"]
            for key, obj in list(self.cluster.objects.items()):
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", ())):
                    self.cluster.objects.pop(key, None)


def _refused_spec_change(kind: str, found: dict, spec: dict | None) -> str | None:
    """Why an API server refuses this change of an object's spec; None when it takes it (or there is none).

    Of a pod's spec, as a real API server allows, only ``activeDeadlineSeconds`` may change, and only to
    a positive value no greater than it was.
    """
    if spec is None:
        return None
    if kind != "pods" or set(spec) != {"activeDeadlineSeconds"}:
        return f"{kind} {found['metadata']['name']}: only a pod's spec.activeDeadlineSeconds may be updated"
    new, old = spec["activeDeadlineSeconds"], found["spec"].get("activeDeadlineSeconds")
    if not isinstance(new, int) or new < 1 or (old is not None and new > old):
        return f"spec.activeDeadlineSeconds: Invalid value: {new!r}: must be a positive integer no greater than {old}"
    return None


class FakeApiServer:
    def __init__(self, kubelet_root: Path | None = None) -> None:
        self.cluster = FakeCluster()
        if kubelet_root is not None:
            self.cluster.kubelet = Kubelet(kubelet_root, self.cluster)
        handler = type("BoundHandler", (Handler,), {"cluster": self.cluster})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig file naming this server, for what reads one (a control plane's backend)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-cluster-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
        return path

    def core_api(self) -> k8s.CoreV1Api:
        configuration = k8s.Configuration(host=self.url)
        return k8s.CoreV1Api(k8s.ApiClient(configuration))

    def stop_pods(self) -> None:
        """Stop every pod the kubelet runs (SIGKILL at once), as a node going away does."""
        assert self.cluster.kubelet is not None
        for (kind, _, _), obj in list(self.cluster.objects.items()):
            if kind == "pods":
                self.cluster.kubelet.stop(obj, 0)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> None:
    """Serve a fake API server with its kubelet until SIGTERM or SIGINT; then stop every pod it runs."""
    parser = argparse.ArgumentParser(description="A fake Kubernetes API server whose kubelet runs pods here.")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write a kubeconfig naming it")
    parser.add_argument("--kubelet-root", type=Path, required=True, help="the folder the pods' folders go in")
    args = parser.parse_args(argv)
    args.kubelet_root.mkdir(parents=True, exist_ok=True)
    server = FakeApiServer(kubelet_root=args.kubelet_root.resolve())
    server.kubeconfig(args.kubeconfig)
    print(f"fake Kubernetes API server on {server.url}; kubeconfig in {args.kubeconfig}", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    server.stop_pods()
    server.stop()


if __name__ == "__main__":
    main()
