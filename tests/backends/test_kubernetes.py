"""The kubernetes backend: its manifests against the Kubernetes OpenAPI schemas, its calls against a fake API server.

With ``TASKYARD_TEST_KUBECONFIG`` set, the tests that set no status by hand and read the cluster
back through its API (the ``cluster`` fixture: launch, an unknown image, terminate, garbage
collection) run against that cluster too (namespace ``TASKYARD_TEST_NAMESPACE``, default ``default``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client as k8s

import taskyard
from k8s_fake import FakeApiServer
from taskyard.backends.base import LaunchRequest, Provisioning, Resources, WorkerState
from taskyard.backends.kubernetes import KubernetesBackend, api_client, from_settings, manifests
from taskyard.backends.registry import BackendContext
from taskyard.backends.settings import KubernetesSettings
from taskyard.models import WorkerRequest
from taskyard.status import TaskStatus, WorkerStatus

from contract import BackendContract, start_control_plane
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


def test_the_fake_refuses_what_the_schemas_do_not_allow(fake) -> None:
    import json
    import urllib.error
    import urllib.request

    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"image": "i"}]}}
    post = urllib.request.Request(f"{fake.url}/api/v1/namespaces/default/pods", data=json.dumps(bad).encode(),
                                  headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(post, timeout=10)
    assert raised.value.code == 422 and "name" in raised.value.read().decode() and fake.cluster.objects == {}
