"""The kubernetes backend: its manifests against the Kubernetes OpenAPI schemas, its calls against a fake API server.

The fake (``tests/k8s_fake.py``) has a kubelet that runs each pod's agent as a process here, so
``TestKubernetesBackend`` runs the whole backend contract (``contract.py``) through it.

With ``TASKYARD_TEST_KUBECONFIG`` set, the tests that set no status by hand and read the cluster
back through its API (the ``any_cluster`` fixture: launch, an unknown image, terminate, garbage
collection) run against that cluster too (namespace ``TASKYARD_TEST_NAMESPACE``, default ``default``).
With ``TASKYARD_TEST_ADVERTISE_URL`` (where that cluster's pods reach a control plane the tests
start on this machine; it listens on ``TASKYARD_TEST_LISTEN``, host:port, else on every interface
at that URL's port) and ``TASKYARD_TEST_IMAGE`` (the container image, with python3 and the agent,
that pods run; ``TASKYARD_TEST_AGENT_IMAGE`` optionally copies the agent in) as well,
``TestKubernetesBackendOnACluster`` runs the contract there, through the cluster's API only: a
crash lowers the pod's ``activeDeadlineSeconds`` to 1, and in place of the two tests that read this
host's ``/proc`` one checks that terminating a worker running a task leaves no pod and no secret.
Every object it makes carries a control-plane label starting ``taskyard-tests-<hex>``, and what is
left at the end is deleted. Against the fake in a process of its own, as against a cluster::

    python tests/k8s_fake.py --kubeconfig /tmp/k/config --kubelet-root /tmp/k/pods &
    TASKYARD_TEST_KUBECONFIG=/tmp/k/config TASKYARD_TEST_IMAGE=python:3.12-slim \\
    TASKYARD_TEST_ADVERTISE_URL=http://127.0.0.1:8765 TASKYARD_TEST_LISTEN=127.0.0.1:8765 \\
    pytest tests/backends/test_kubernetes.py
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

import taskyard
from k8s_fake import FakeApiServer
from taskyard import embedded
from taskyard.backends.base import Backend, LaunchRequest, Provisioning, Resources, WorkerState
from taskyard.backends.kubernetes import KubernetesBackend, api_client, from_settings, manifests
from taskyard.backends.registry import BackendContext, backend_types, make_backend
from taskyard.backends.settings import KubernetesSettings
from taskyard.models import WorkerRequest
from taskyard.status import TaskStatus, WorkerStatus

from contract import STARTUP, BackendContract, start_control_plane, worker_handle
from support import Server, processes_in, wait_for, write

K8S_VERSION = "1.37.0"
TOKEN = "tyw_secret-token-value"
REAL = os.environ.get("TASKYARD_TEST_KUBECONFIG")


def settings(**overrides) -> KubernetesSettings:
    return KubernetesSettings(images={"python": "python:3.12-slim"}, **overrides)


def request(name: str = "w-1", gpus: tuple[str, ...] = ()) -> LaunchRequest:
    return LaunchRequest(worker_name=name, agent_token=TOKEN, control_plane_url="http://plane.example:8000",
                         size="small", image="python", resources=Resources(cpu=1.5, memory=2 << 30, gpus=gpus))


def validate(manifest: dict) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


FULL = settings(agent_image="ghcr.io/taskyard/agent:1", service_account="workers", time_to_live=3600,
                node_selector={"pool": "spot"}, namespace="jobs",
                tolerations=({"key": "spot", "operator": "Exists", "effect": "NoSchedule"},))


@pytest.mark.parametrize("config", [settings(), FULL], ids=["plain", "full"])
@pytest.mark.parametrize("gpus", [(), ("0", "1")], ids=["cpu", "gpu"])
def test_manifests_are_valid_kubernetes_objects(config, gpus) -> None:
    made = request(gpus=gpus)
    validate(manifests.pod(made, "python:3.12-slim", "plane-1", config))
    validate(manifests.secret(made, "plane-1", config.namespace))
    validate({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}} | manifests.owned_by(
        {"metadata": {"name": "taskyard-w-1", "uid": "0c1f0a3e-0000-4000-8000-000000000000"}}))


def test_pod_says_what_the_settings_and_size_say() -> None:
    spec = manifests.pod(request(gpus=("0",)), "img:1", "plane-1", FULL)["spec"]
    agent = spec["containers"][0]
    assert agent["resources"]["limits"] == {"cpu": "1500m", "memory": str(2 << 30), "nvidia.com/gpu": "1"}
    assert agent["resources"]["requests"] == agent["resources"]["limits"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 3600
    assert spec["serviceAccountName"] == "workers" and spec["nodeSelector"] == {"pool": "spot"}
    assert spec["tolerations"] == [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["initContainers"][0]["image"] == "ghcr.io/taskyard/agent:1"
    assert {"name": "PYTHONPATH", "value": f"{manifests.WORKER_DIR}/.agent"} in agent["env"]
    assert "python3 -m taskyard.agent" in agent["command"][-1]


def test_the_token_is_only_in_the_secret_and_the_agent_never_mounts_it() -> None:
    pod = manifests.pod(request(), "img:1", "plane-1", settings())
    assert TOKEN not in repr(pod)
    assert all(m["name"] != "token" for m in pod["spec"]["containers"][0]["volumeMounts"])
    assert manifests.secret(request(), "plane-1", "default")["stringData"] == {manifests.TOKEN_KEY: TOKEN}


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.stop()


@pytest.fixture
def backend(fake) -> Iterator[KubernetesBackend]:
    made = KubernetesBackend(fake.core_api(), settings(provisioning_timeout=60), "plane-1")
    yield made
    made.close()


def test_launch_creates_a_secret_then_a_pod_that_owns_it(fake, backend) -> None:
    handle = backend.launch(request())
    posts = fake.cluster.calls("POST", "secrets") + fake.cluster.calls("POST", "pods")
    assert [r.path for r in posts] == ["/api/v1/namespaces/default/secrets", "/api/v1/namespaces/default/pods"]
    for made in posts:
        validate(made.body)
    patch = fake.cluster.calls("PATCH", "secrets")[0]
    assert patch.path == "/api/v1/namespaces/default/secrets/taskyard-w-1"
    assert patch.body["metadata"]["ownerReferences"][0]["uid"] == handle["uid"]
    assert posts[1].body["metadata"]["labels"][manifests.LABEL_PLANE] == "plane-1"
    assert backend.poll(handle) is WorkerState.STARTING


def test_an_unknown_image_is_refused_and_leaves_nothing(fake, backend) -> None:
    with pytest.raises(ValueError, match="no image 'cuda'"):
        backend.launch(LaunchRequest("w-2", TOKEN, "http://p", "small", "cuda"))
    assert fake.cluster.objects == {}


def test_a_pod_that_fails_to_be_made_takes_its_secret_with_it(fake, backend) -> None:
    fake.cluster.objects[("pods", "default", "taskyard-w-1")] = {"metadata": {"name": "taskyard-w-1", "uid": "u"}}
    with pytest.raises(Exception, match="409"):
        backend.launch(request())
    assert ("secrets", "default", "taskyard-w-1") not in fake.cluster.objects
    assert ("pods", "default", "taskyard-w-1") in fake.cluster.objects  # not ours: left alone


@pytest.mark.parametrize("status", [
    {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."},
    {"phase": "Running",
     "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]},
], ids=["evicted", "disruption-target"])
def test_evicted_or_preempted_pods_are_preempted(fake, backend, status) -> None:
    handle = backend.launch(request())
    fake.cluster.set_status("default", "taskyard-w-1", **status)
    assert backend.poll(handle) is WorkerState.PREEMPTED


def test_a_pod_whose_node_was_deleted_is_preempted(fake, backend) -> None:
    handle = backend.launch(request())
    fake.cluster.objects[("pods", "default", "taskyard-w-1")]["spec"]["nodeName"] = "node-1"
    fake.cluster.set_status("default", "taskyard-w-1", phase="Running")
    assert backend.poll(handle) is WorkerState.RUNNING
    fake.cluster.nodes.clear()
    assert backend.poll(handle) is WorkerState.PREEMPTED


def test_a_pod_that_ended_is_gone(fake, backend) -> None:
    handle = backend.launch(request())
    fake.cluster.set_status("default", "taskyard-w-1", phase="Succeeded")
    assert backend.poll(handle) is WorkerState.GONE


def test_an_unscheduled_pod_says_the_schedulers_reason_and_is_left_for_the_control_plane(fake, backend) -> None:
    handle = backend.launch(request())
    assert backend.provisioning(handle) == Provisioning(WorkerState.STARTING)  # nothing to tell yet
    reason = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    fake.cluster.set_status("default", "taskyard-w-1", phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason}])
    assert backend.provisioning(handle) == Provisioning(WorkerState.STARTING, f"Unschedulable: {reason}")
    assert backend.poll(handle) is WorkerState.STARTING
    assert backend.provisioning_timeout == 60
    assert ("pods", "default", "taskyard-w-1") in fake.cluster.objects  # given up by the control plane, not here


def container(name: str, **state) -> dict:
    return {"name": name, "image": "python:3.12-slim", "imageID": "", "ready": False, "restartCount": 0,
            "state": state}


def test_an_image_that_cannot_be_pulled_is_told_and_a_container_being_made_is_not(fake, backend) -> None:
    handle = backend.launch(request())
    scheduled = [{"type": "PodScheduled", "status": "True"}]
    fake.cluster.set_status("default", "taskyard-w-1", phase="Pending", conditions=scheduled, containerStatuses=[
        container("agent", waiting={"reason": "ContainerCreating"})])
    assert backend.provisioning(handle) == Provisioning(WorkerState.STARTING)
    pulling = 'Back-off pulling image "python:3.12-slimm"'
    fake.cluster.set_status("default", "taskyard-w-1", phase="Pending", conditions=scheduled, containerStatuses=[
        container("agent", waiting={"reason": "ImagePullBackOff", "message": pulling})])
    assert backend.provisioning(handle) == Provisioning(
        WorkerState.STARTING, f"container agent: ImagePullBackOff: {pulling}")


def test_a_pod_whose_init_container_failed_is_gone_and_says_so(fake, backend) -> None:
    handle = backend.launch(request())
    fake.cluster.set_status("default", "taskyard-w-1", phase="Failed", initContainerStatuses=[
        container("taskyard-init", terminated={"exitCode": 1, "reason": "Error"})])
    assert backend.provisioning(handle) == Provisioning(
        WorkerState.GONE, "container taskyard-init exited with code 1: Error")


def test_terminate_deletes_pod_and_secret_and_is_idempotent(fake, backend) -> None:
    handle = backend.launch(request())
    backend.terminate(handle)
    assert fake.cluster.objects == {}
    assert [r.path for r in fake.cluster.calls("DELETE", "")][:2] == [
        "/api/v1/namespaces/default/pods/taskyard-w-1", "/api/v1/namespaces/default/secrets/taskyard-w-1"]
    backend.terminate(handle)
    assert backend.poll(handle) is WorkerState.GONE


def test_garbage_collection_deletes_only_own_pods_without_a_live_worker(fake, backend) -> None:
    backend.launch(request("live"))
    backend.launch(request("stale"))
    other = KubernetesBackend(fake.core_api(), settings(), "plane-2")
    other.launch(request("theirs"))
    assert backend.collect_garbage(lambda: {"live"}) == ["taskyard-stale"]
    names = {name for (_, _, name) in fake.cluster.objects}
    assert names == {"taskyard-live", "taskyard-theirs"}
    other.close()


# -- the same tests on the fake and, with TASKYARD_TEST_KUBECONFIG, on a real cluster: read back through its API --

NO_REAL = "TASKYARD_TEST_KUBECONFIG is not set: no real cluster to run against"
NAMESPACE = os.environ.get("TASKYARD_TEST_NAMESPACE", "default")


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.skipif(not REAL, reason=NO_REAL))])
def any_cluster(request) -> Iterator[tuple[Callable[[str], KubernetesBackend], Any]]:
    """A maker of backends (each with a control-plane name of its own) and the API they call, fake or real."""
    fake = FakeApiServer() if request.param == "fake" else None
    config = settings() if fake else settings(kubeconfig=REAL, namespace=NAMESPACE)
    api = fake.core_api() if fake else k8s.CoreV1Api(api_client(config))
    made: list[KubernetesBackend] = []

    def backend(plane: str) -> KubernetesBackend:
        made.append(KubernetesBackend(api, config, f"taskyard-tests-{plane}-{secrets.token_hex(3)}"))
        return made[-1]

    try:
        yield backend, api
    finally:
        for each in made:
            each.collect_garbage(set)
            each.close()
        if fake is not None:
            fake.stop()


def owned(backend: KubernetesBackend, api) -> set[tuple[str, str]]:
    """The pods and secrets of ``backend``'s control plane that the cluster still has, not being deleted."""
    selector = f"{manifests.LABEL_PLANE}={backend.plane}"
    listings = (("pod", api.list_namespaced_pod), ("secret", api.list_namespaced_secret))
    return {(kind, item.metadata.name) for kind, listing in listings
            for item in listing(backend.namespace, label_selector=selector).items
            if item.metadata.deletion_timestamp is None}


def test_a_launch_leaves_a_pod_and_the_secret_it_owns_and_no_token_in_the_pod(any_cluster) -> None:
    make, api = any_cluster
    backend = make("launch")
    handle = backend.launch(request("own"))
    pod = api.read_namespaced_pod(handle["pod"], backend.namespace)
    secret = api.read_namespaced_secret(handle["pod"], backend.namespace)
    assert [ref.uid for ref in secret.metadata.owner_references] == [pod.metadata.uid]
    assert pod.metadata.labels[manifests.LABEL_PLANE] == backend.plane
    assert TOKEN not in str(pod.to_dict())
    assert backend.poll(handle) in (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.GONE)


def test_a_launch_with_an_unknown_image_leaves_nothing_on_the_cluster(any_cluster) -> None:
    make, api = any_cluster
    backend = make("image")
    with pytest.raises(ValueError, match="no image 'cuda'"):
        backend.launch(LaunchRequest("w-2", TOKEN, "http://p", "small", "cuda"))
    assert owned(backend, api) == set()


def test_terminate_removes_pod_and_secret_and_again_is_harmless(any_cluster) -> None:
    make, api = any_cluster
    backend = make("terminate")
    handle = backend.launch(request("gone"))
    backend.terminate(handle)
    wait_for(lambda: owned(backend, api) == set(), timeout=60)
    backend.terminate(handle)
    assert backend.poll(handle) is WorkerState.GONE


def test_garbage_collection_takes_only_its_own_control_planes_objects_of_gone_workers(any_cluster) -> None:
    make, api = any_cluster
    ours, theirs = make("ours"), make("theirs")
    for name in ("live", "stale"):
        ours.launch(request(name))
    theirs.launch(request("theirs"))
    assert ours.collect_garbage(lambda: {"live"}) == ["taskyard-stale"]
    wait_for(lambda: owned(ours, api) == {("pod", "taskyard-live"), ("secret", "taskyard-live")}, timeout=60)
    assert owned(theirs, api) == {("pod", "taskyard-theirs"), ("secret", "taskyard-theirs")}


# -- a control plane whose pods the cluster cannot place: what its user reads, through the API --

PROVISIONING = 10  # seconds: the backend's provisioning_timeout, long enough for a placed pod's agent to call in
FULL_CLUSTER = "0/3 nodes are available: 3 Insufficient cpu."


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Iterator[tuple[FakeApiServer, Server]]:
    """A fake cluster whose kubelet runs the pods it places, and a control plane of its own on it."""
    api = FakeApiServer(kubelet_root=tmp_path_factory.mktemp("full-kubelet"))
    folder = tmp_path_factory.mktemp("full-plane")
    kubeconfig = api.kubeconfig(folder / "kubeconfig")
    (folder / "server.toml").write_text(
        f'backend = "pods"\n[backends.pods]\ntype = "kubernetes"\nkubeconfig = "{kubeconfig}"\n'
        f'images = {{ python = "python:3.12-slim" }}\nprovisioning_timeout = {PROVISIONING}\n')
    server = start_control_plane(folder / "home", TASKYARD_KILL_GRACE="1", TASKYARD_WARM_WORKERS="0",
                                 TASKYARD_CONFIG=str(folder / "server.toml"))  # no warm worker: each task its pod
    yield api, server
    server.stop()
    api.stop()


def waiting_reason(server: Server, task_id: str):
    """The task's info once its status message says what the cluster said (it is still In Queue then)."""
    return wait_for(lambda: FULL_CLUSTER in ((info := server.client.task(task_id)).reason or "") and info, timeout=30)


def test_a_task_whose_pod_cannot_be_placed_says_why_then_runs_on_a_new_worker(full, tmp_path) -> None:
    api, server = full
    api.cluster.unschedulable.append(FULL_CLUSTER)  # the first pod only; the next one is placed and runs
    write(tmp_path, "hello.py", "print('hello from the second worker')\n")
    task = taskyard.submit("hello.py", files_path=tmp_path, client=server.client)

    waiting = waiting_reason(server, task.id)
    first = waiting.worker_name
    assert waiting.status is TaskStatus.IN_QUEUE
    assert waiting.reason == f"waiting for worker {first} to start: Unschedulable: {FULL_CLUSTER}"
    worker = server.client.worker(first)
    assert (worker.status, worker.reason) == (WorkerStatus.PROVISIONING, f"Unschedulable: {FULL_CLUSTER}")

    assert task.wait(timeout=PROVISIONING + 60) is TaskStatus.SUCCESS
    info = server.client.task(task.id)
    assert info.worker_name != first and "hello from the second worker" in task.logs()
    given_up = f"it did not start within {PROVISIONING} s: Unschedulable: {FULL_CLUSTER}"
    assert info.reason == f"worker {first} was lost ({given_up}); queued again"
    assert server.client.worker(first).reason == f"lost: {given_up}"
    assert manifests.object_name(first) not in {name for (_, _, name) in api.cluster.objects}


def test_a_task_whose_pod_is_placed_at_last_runs_there_and_the_waiting_message_goes(full, tmp_path) -> None:
    api, server = full
    api.cluster.unschedulable.append(FULL_CLUSTER)
    write(tmp_path, "hello.py", "print('hello')\n")
    task = taskyard.submit("hello.py", files_path=tmp_path, client=server.client)
    worker = waiting_reason(server, task.id).worker_name
    api.cluster.place("default", manifests.object_name(worker))  # a node was added
    assert task.wait(timeout=60) is TaskStatus.SUCCESS
    info = server.client.task(task.id)
    assert (info.worker_name, info.reason) == (worker, None)
    assert all(change.reason is None for change in info.status_history)
    assert server.client.worker(worker).reason == f"task {task.id} ended"  # no longer the cluster's words


def test_a_task_sent_to_a_worker_that_is_never_placed_ends_with_the_schedulers_reason(full, tmp_path) -> None:
    api, server = full
    api.cluster.unschedulable.append(FULL_CLUSTER)
    kept = server.client.create_worker(WorkerRequest())
    write(tmp_path, "hello.py", "print('never runs')\n")
    task = taskyard.submit("hello.py", files_path=tmp_path, worker=kept.name, client=server.client)

    waiting = waiting_reason(server, task.id)
    assert waiting.reason == f"waiting for worker {kept.name} to start: Unschedulable: {FULL_CLUSTER}"
    assert task.wait(timeout=PROVISIONING + 30) is TaskStatus.MACHINE_TERMINATED_IN_QUEUE
    reason = f"worker {kept.name} was lost: it did not start within {PROVISIONING} s: Unschedulable: {FULL_CLUSTER}"
    assert server.client.task(task.id).reason == reason


# -- the contract suite, through the fake API server, whose kubelet runs each pod's agent here --


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[FakeApiServer]:
    server = FakeApiServer(kubelet_root=tmp_path_factory.mktemp("kubelet"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kubeconfig(cluster, tmp_path_factory) -> Path:
    return cluster.kubeconfig(tmp_path_factory.mktemp("kube") / "config")


def contract_settings(kubeconfig: Path) -> KubernetesSettings:
    return KubernetesSettings(kubeconfig=str(kubeconfig), images={"python": "python:3.12-slim"})


@pytest.fixture(scope="module")
def contract_server(kubeconfig, tmp_path_factory) -> Iterator[Server]:
    """A control plane whose only backend is the kubernetes one, on the fake cluster; a kill grace of 1 s."""
    config = tmp_path_factory.mktemp("k8s-plane") / "server.toml"
    config.write_text(f'backend = "kubernetes"\n[backends.kubernetes]\ntype = "kubernetes"\n'
                      f'kubeconfig = "{kubeconfig}"\n' 'images = { python = "python:3.12-slim" }\n')
    server = start_control_plane(
        config.parent / "home", TASKYARD_KILL_GRACE="1", TASKYARD_CONFIG=str(config), TASKYARD_GARBAGE_SECONDS="1"
    )
    yield server
    server.stop()


def test_the_control_plane_removes_its_pods_that_no_worker_of_its_own(contract_server, kubeconfig, cluster):
    """A pod (and its secret) with this control plane's label and no worker in its store goes."""
    stray = from_settings(contract_settings(kubeconfig), BackendContext("kubernetes", contract_server.home))
    stray.launch(request("stray"))
    name = manifests.object_name("stray")
    assert ("pods", "default", name) in cluster.cluster.objects
    wait_for(lambda: not {key for key in cluster.cluster.objects if key[2] == name}, timeout=20)
    stray.close()


class TestKubernetesBackend(BackendContract):
    @pytest.fixture
    def backend(self, data_dir: Path, kubeconfig: Path, cluster: FakeApiServer) -> Iterator[KubernetesBackend]:
        self.cluster, self.kubeconfig = cluster, kubeconfig
        made = self.reopen(None, data_dir)
        yield made
        made.close()

    def reopen(self, backend, data_dir: Path) -> KubernetesBackend:
        return from_settings(contract_settings(self.kubeconfig), BackendContext("pods", data_dir))

    def _pod(self, worker_name: str) -> dict | None:
        return self.cluster.cluster.objects.get(("pods", "default", manifests.object_name(worker_name)))

    def crash(self, handle: dict) -> None:
        assert self.cluster.cluster.kubelet is not None
        os.kill(self.cluster.cluster.kubelet.running[handle["uid"]].pid, signal.SIGKILL)

    def _folder(self, pod: dict) -> Path:
        assert self.cluster.cluster.kubelet is not None
        return self.cluster.cluster.kubelet.folder(pod)

    def traces(self, backend, worker_name: str) -> set[str]:
        name = manifests.object_name(worker_name)
        found = {f"{kind} {key}" for (kind, _, key) in self.cluster.cluster.objects if key == name}
        pod = self._pod(worker_name)
        if pod is not None:
            found |= {f"process {pid}" for pid in processes_in(self._folder(pod))}
        return found

    def force_cleanup(self, backend, worker_name: str) -> None:
        pod = self._pod(worker_name)
        if pod is not None:
            for pid in processes_in(self._folder(pod)):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        name = manifests.object_name(worker_name)
        for kind in ("pods", "secrets"):
            self.cluster.cluster.objects.pop((kind, "default", name), None)


def test_the_fake_kubelet_ends_a_pod_whose_deadline_was_lowered_as_a_kubelet_does(cluster) -> None:
    """What the real-cluster suite's ``crash`` does, on the fake: a raised deadline is refused, a lowered one kept."""
    backend = KubernetesBackend(cluster.core_api(), settings(time_to_live=3600), "plane-deadline")
    handle = backend.launch(request("deadline"))
    try:
        wait_for(lambda: backend.poll(handle) is WorkerState.RUNNING, timeout=30)
        with pytest.raises(ApiException, match="422"):
            backend.api.patch_namespaced_pod(handle["pod"], "default", {"spec": {"activeDeadlineSeconds": 7200}})
        backend.api.patch_namespaced_pod(handle["pod"], "default", {"spec": {"activeDeadlineSeconds": 1}})
        wait_for(lambda: backend.poll(handle) is WorkerState.GONE, timeout=30)
        pod = cluster.cluster.objects[("pods", "default", handle["pod"])]
        assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
        assert processes_in(cluster.cluster.kubelet.folder(pod)) == []
    finally:
        backend.terminate(handle)
        backend.close()


# -- the contract suite on the cluster TASKYARD_TEST_KUBECONFIG names, through its API only --

ADVERTISE = os.environ.get("TASKYARD_TEST_ADVERTISE_URL")
IMAGE = os.environ.get("TASKYARD_TEST_IMAGE")
AGENT_IMAGE = os.environ.get("TASKYARD_TEST_AGENT_IMAGE") or None
RUN = f"taskyard-tests-{secrets.token_hex(3)}"  # the backend's name: every control-plane label of this run starts so
NOT_VISIBLE = "a real cluster's processes are not visible from here; the pod's deletion is what stops them"
GONE_ON_A_CLUSTER = 60.0  # seconds for a terminated worker's pod to go


def missing_cluster_variable() -> str | None:
    """Why the contract cannot run on a real cluster: the first variable it needs that is not set; None if none."""
    needs = {"TASKYARD_TEST_KUBECONFIG": "the cluster's kubeconfig",
             "TASKYARD_TEST_ADVERTISE_URL": "the URL at which the cluster's pods reach a control plane on this machine",
             "TASKYARD_TEST_IMAGE": "the container image, with python3 and taskyard, that pods run"}
    for name, what in needs.items():
        if not os.environ.get(name):
            return f"{name} is not set ({what}): no real cluster to run the contract on"
    return None


WHY_NOT_ON_A_CLUSTER = missing_cluster_variable()


def cluster_settings() -> KubernetesSettings:
    assert REAL and IMAGE
    return KubernetesSettings(kubeconfig=REAL, namespace=NAMESPACE, images={"python": IMAGE}, agent_image=AGENT_IMAGE)


def cluster_config(path: Path) -> Path:
    """A server configuration whose one backend, called :data:`RUN`, is the cluster's."""
    agent = f"agent_image = {json.dumps(AGENT_IMAGE)}\n" if AGENT_IMAGE else ""
    path.write_text(f'backend = "{RUN}"\n[backends.{RUN}]\ntype = "kubernetes"\nkubeconfig = {json.dumps(REAL)}\n'
                    f'namespace = {json.dumps(NAMESPACE)}\nimages = {{ python = {json.dumps(IMAGE)} }}\n{agent}')
    return path


def listen_address() -> tuple[str, int]:
    """Where the test control plane listens: TASKYARD_TEST_LISTEN, else every interface at the advertised port."""
    given = os.environ.get("TASKYARD_TEST_LISTEN")
    if given:
        host, _, port = given.rpartition(":")
        return host.strip("[]"), int(port)
    url = urlparse(ADVERTISE)
    return "0.0.0.0", url.port or (443 if url.scheme == "https" else 80)


class ListeningServer(Server):
    """A control plane of its own, as the embedded one (a home, a token, SQLite), listening on ``host``:``port``."""

    def __init__(self, home: Path, host: str, port: int, **env: str) -> None:
        super().__init__(home, **env)
        self.listen = (host, port)
        self.process: subprocess.Popen | None = None

    def start(self) -> ListeningServer:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "port").write_text(str(self.listen[1]))  # the port an embedded server takes when it is free
        with open(self.home / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "taskyard", "server", "--embedded", "--host", self.listen[0]],
                env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            wait_for(self._answers, timeout=30)
        except AssertionError:  # it never answered: it goes
            self.process.kill()
            self.process.wait()
            raise
        super().start()  # finds it answering
        if embedded.saved_port(self.home) != self.listen[1]:
            self.stop()
            pytest.fail(f"the test control plane could not listen on {self.listen} (busy?): set TASKYARD_TEST_LISTEN")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the test control plane exited: {(self.home / 'server.log').read_text()[-2000:]}")
        return embedded.status(self.home) is not None

    def stop(self) -> None:
        super().stop()
        if self.process is not None:
            self.process.wait(timeout=30)


def standing(read: Callable[..., Any], name: str) -> bool:
    """Whether the object ``read`` reads is on the cluster and not being deleted."""
    try:
        found = read(name, NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return found.metadata.deletion_timestamp is None


def delete_at_once(delete: Callable[..., Any], name: str) -> None:
    try:
        delete(name, NAMESPACE, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise


def sweep(api: Any) -> None:
    """Delete what this run left on the cluster: the pods and secrets of control planes named after :data:`RUN`."""
    kinds = ((api.list_namespaced_pod, api.delete_namespaced_pod),
             (api.list_namespaced_secret, api.delete_namespaced_secret))
    for listing, delete in kinds:
        for item in listing(NAMESPACE, label_selector="app.kubernetes.io/managed-by=taskyard").items:
            if (item.metadata.labels or {}).get(manifests.LABEL_PLANE, "").startswith(f"{RUN}-"):
                delete_at_once(delete, item.metadata.name)


@pytest.fixture(scope="class")
def cluster_api() -> Iterator[Any]:
    """The real cluster's API; at the end, whatever this run left there is deleted."""
    made = k8s.CoreV1Api(api_client(cluster_settings()))
    yield made
    sweep(made)
    made.api_client.close()


@pytest.fixture(scope="class")
def cluster_plane(cluster_api: Any, tmp_path_factory) -> Iterator[Server]:
    """A control plane here, at TASKYARD_TEST_ADVERTISE_URL for the cluster's pods; a kill grace of 1 s."""
    folder = tmp_path_factory.mktemp("cluster-plane")
    config = cluster_config(folder / "server.toml")
    server = ListeningServer(folder / "home", *listen_address(), TASKYARD_CONFIG=str(config),
                             TASKYARD_ADVERTISE_URL=str(ADVERTISE), TASKYARD_KILL_GRACE="1",
                             TASKYARD_WARM_WORKERS="0").start()
    yield server
    server.stop()  # its pods stay, as a stopped control plane's do: cluster_api's sweep takes them


@pytest.mark.skipif(WHY_NOT_ON_A_CLUSTER is not None, reason=WHY_NOT_ON_A_CLUSTER or "")
class TestKubernetesBackendOnACluster(BackendContract):
    """The contract on the cluster TASKYARD_TEST_KUBECONFIG names, which the tests reach through its API only."""

    @pytest.fixture
    def backend(self, data_dir: Path, cluster_api: Any) -> Iterator[Backend]:
        self.api = cluster_api
        made = self.reopen(None, data_dir)
        yield made
        made.close()

    @pytest.fixture
    def contract_server(self, cluster_plane: Server) -> Server:
        return cluster_plane

    def reopen(self, backend, data_dir: Path) -> Backend:
        return make_backend(backend_types()["kubernetes"], cluster_settings(), BackendContext(RUN, data_dir))

    def crash(self, handle: dict) -> None:
        """The pod's activeDeadlineSeconds lowered to 1 (allowed on a running pod): its kubelet kills it."""
        self.api.patch_namespaced_pod(handle["pod"], handle["namespace"], {"spec": {"activeDeadlineSeconds": 1}})

    def traces(self, backend, worker_name: str) -> set[str]:
        name = manifests.object_name(worker_name)
        reads = {"pod": self.api.read_namespaced_pod, "secret": self.api.read_namespaced_secret}
        return {f"{kind} {name}" for kind, read in reads.items() if standing(read, name)}

    def force_cleanup(self, backend, worker_name: str) -> None:
        for delete in (self.api.delete_namespaced_pod, self.api.delete_namespaced_secret):
            delete_at_once(delete, manifests.object_name(worker_name))

    @pytest.mark.skip(reason=NOT_VISIBLE)
    def test_terminate_stops_every_process_the_worker_started(self):
        pass

    @pytest.mark.skip(reason=NOT_VISIBLE)
    def test_terminate_stops_what_the_worker_started_after_its_agent_died(self):
        pass

    @pytest.mark.parametrize(
        "in_startup_script, ignore_sigterm, agent_died",
        [(False, False, False), (False, True, False), (True, False, False), (False, True, True)],
        ids=["task-obeys-sigterm", "task-ignores-sigterm", "startup-script", "after-its-agent-died"],
    )
    def test_terminating_a_worker_running_a_task_leaves_no_pod_and_no_secret(
        self, backend, contract_server, tmp_path, leftovers, in_startup_script, ignore_sigterm, agent_died
    ):
        server = contract_server
        task, _ = self._submit_process_tree(server, tmp_path / "task", leftovers, ignore_sigterm=ignore_sigterm,
                                            in_startup_script=in_startup_script)
        name, seen = task.refresh().worker_name, self.reopen(backend, server.home)
        handle = worker_handle(server, name)
        assert self.traces(seen, name) == {f"pod {handle['pod']}", f"secret {handle['pod']}"}
        if agent_died:
            self.crash(handle)
            wait_for(lambda: seen.poll(handle) is WorkerState.GONE, timeout=STARTUP)
        server.client.terminate_worker(name)
        wait_for(lambda: server.client.worker(name).status is WorkerStatus.TERMINATED, timeout=GONE_ON_A_CLUSTER)
        assert seen.poll(handle) is WorkerState.GONE
        assert self.traces(seen, name) == set()


def test_the_fake_refuses_what_the_schemas_do_not_allow(fake) -> None:
    import urllib.error
    import urllib.request

    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"image": "i"}]}}
    post = urllib.request.Request(f"{fake.url}/api/v1/namespaces/default/pods", data=json.dumps(bad).encode(),
                                  headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(post, timeout=10)
    assert raised.value.code == 422 and "name" in raised.value.read().decode() and fake.cluster.objects == {}
