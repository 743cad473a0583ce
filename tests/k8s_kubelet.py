"""The fake API server's kubelet: each pod's containers run as local processes in a folder of the pod's.

Volumes are folders under the pod's folder (an ``emptyDir`` empty, a ``secret`` with the Secret's
keys as files); a container's mount paths, in its command, working directory and environment,
become those folders. Init containers run one after the other, then the first container, in a
session of its own, with the host's ``PATH`` and ``PYTHONPATH`` (the node's "image") and the
container's environment. When it exits, every process left in the pod's folder is killed, as a
container's end kills what it holds, and the pod's phase becomes Succeeded or Failed. A pod
running longer than its ``activeDeadlineSeconds`` (as made, or lowered since) is killed, every
process in it, and ends Failed with reason DeadlineExceeded. Deleting a pod stops it (SIGTERM,
SIGKILL after the grace period) before the object goes.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from support import processes_in

HOST_ENV = ("PATH", "PYTHONPATH", "LANG", "TZ")
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"  # a kubelet's words


class Kubelet:
    def __init__(self, root: Path, cluster) -> None:
        self.root, self.cluster = root, cluster
        self.running: dict[str, subprocess.Popen] = {}  # pod uid -> its container's process

    def folder(self, pod: dict) -> Path:
        return self.root / pod["metadata"]["uid"]

    def start(self, namespace: str, pod: dict) -> None:
        threading.Thread(target=self._run, args=(namespace, pod), daemon=True).start()

    def _run(self, namespace: str, pod: dict) -> None:
        started = time.monotonic()
        mounts = self._volumes(namespace, pod)
        spec = pod["spec"]
        for init in spec.get("initContainers", ()):
            if subprocess.run(**self._args(init, mounts)).returncode != 0:
                return self._phase(pod, "Failed")
        process = subprocess.Popen(**self._args(spec["containers"][0], mounts), start_new_session=True)
        self.running[pod["metadata"]["uid"]] = process
        self._phase(pod, "Running")
        code = self._wait(pod, process, started)
        self._kill_all(pod, signal.SIGKILL)
        if code is None:
            return self._phase(pod, "Failed", reason="DeadlineExceeded", message=DEADLINE_MESSAGE)
        self._phase(pod, "Succeeded" if code == 0 else "Failed")

    def _wait(self, pod: dict, process: subprocess.Popen, started: float) -> int | None:
        """The container's exit code; None when the pod outlived its activeDeadlineSeconds and was killed for it."""
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return process.wait(0.1)
            deadline = pod["spec"].get("activeDeadlineSeconds")
            if deadline is not None and time.monotonic() - started >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                self._kill_all(pod, signal.SIGKILL)
                process.wait()
                return None

    def _volumes(self, namespace: str, pod: dict) -> dict[str, Path]:
        made = {}
        for volume in pod["spec"].get("volumes", ()):
            folder = self.folder(pod) / "volumes" / volume["name"]
            folder.mkdir(parents=True)
            if "secret" in volume:
                secret = self.cluster.objects[("secrets", namespace, volume["secret"]["secretName"])]
                for key, value in _secret_data(secret).items():
                    (folder / key).write_bytes(value)
            made[volume["name"]] = folder
        return made

    def _args(self, container: dict, volumes: dict[str, Path]) -> dict:
        paths = {m["mountPath"]: str(volumes[m["name"]]) for m in container.get("volumeMounts", ())}

        def mapped(text: str) -> str:
            for path in sorted(paths, key=len, reverse=True):
                text = text.replace(path, paths[path])
            return text

        env = {key: os.environ[key] for key in HOST_ENV if key in os.environ}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
        if "PYTHONPATH" in env:  # the image's packages: this test run's taskyard
            parts = env["PYTHONPATH"].split(os.pathsep)
            env["PYTHONPATH"] = os.pathsep.join(str(Path(part).resolve()) for part in parts)
        env |= {item["name"]: mapped(item["value"]) for item in container.get("env", ())}
        return {"args": [mapped(part) for part in container["command"]], "env": env,
                "cwd": mapped(container.get("workingDir", "/tmp")), "stdin": subprocess.DEVNULL}

    def _phase(self, pod: dict, phase: str, **why: str) -> None:
        with self.cluster.lock:
            pod["status"] = {"phase": phase, "conditions": [{"type": "PodScheduled", "status": "True"}], **why}

    def stop(self, pod: dict, grace: int) -> None:
        """Stop the pod's container (SIGTERM, then SIGKILL after ``grace``) and everything in it."""
        process = self.running.get(pod["metadata"]["uid"])
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
        self._kill_all(pod, signal.SIGKILL)
        if process is not None:
            process.wait()
        shutil.rmtree(self.folder(pod), ignore_errors=True)

    def _kill_all(self, pod: dict, sig: signal.Signals) -> None:
        for _ in range(50):
            found = processes_in(self.folder(pod))
            if not found:
                return
            for pid in found:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            time.sleep(0.05)


def _secret_data(secret: dict) -> dict[str, bytes]:
    data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    return data | {key: value.encode() for key, value in (secret.get("stringData") or {}).items()}
