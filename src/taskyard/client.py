"""A typed HTTP client for the control plane. Server errors come back as the same typed exceptions."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx

from taskyard.callbacks import CallbackDelivery, CallbackList, SigningSecret
from taskyard.errors import ServerUnavailable, TaskyardError, error_from_dict
from taskyard.models import (
    ExecRequest,
    ExecResult,
    GroupInfo,
    ImageInfo,
    KeyRotation,
    LogPage,
    NotebookServerInfo,
    OutputFiles,
    PoolInfo,
    PoolSpec,
    SecretInfo,
    SecretValue,
    ShellDoorInfo,
    SizeCatalog,
    TaskBatchInfo,
    TaskInfo,
    TaskMetadata,
    TaskPage,
    TaskSpec,
    UserInfo,
    WorkerInfo,
    WorkerRequest,
)
from taskyard.task_runner import FolderInfo


class Client:
    """``url``: one server, or several sharing one database, comma-separated (``http://a:8642,http://b:8642``).

    With several, a request that cannot reach one server goes to the next: at once when it could not
    connect (so it never arrived), and for reads also when the connection broke; the one that
    answered is asked first from then on.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.urls = [part.strip().rstrip("/") for part in url.split(",") if part.strip()]
        if not self.urls:
            raise TaskyardError("no taskyard server URL given; set TASKYARD_URL, e.g. http://127.0.0.1:8642")
        self.url = self.urls[0]  # the server that answered last
        self._http = httpx.Client(
            base_url=self.url + "/api/v1",  # requests name each server in full; this is for relative ones
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=5.0),
        )
        self._upload_limit: int | None = None

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, timeout: float | None = None, **kwargs) -> httpx.Response:
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=5.0)
        response = self._in_turn(lambda base: self._http.request(method, f"{base}/api/v1{path}", **kwargs), method)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _in_turn(self, call, method: str):
        """``call(base URL)`` on the server that answered last, then on each other one while it is unreachable."""
        order = [self.url] + [url for url in self.urls if url != self.url]
        for number, base in enumerate(order, 1):
            try:
                answer = call(base)
            except httpx.TransportError as exc:
                if number == len(order) or not _elsewhere(method, exc):
                    raise ServerUnavailable(f"cannot reach the taskyard server at {base}: {exc}") from exc
                continue
            self.url = base
            return answer
        raise AssertionError("unreachable: there is at least one URL")

    # -- tasks --------------------------------------------------------------------------------------

    def submit(self, spec: TaskSpec) -> TaskInfo:
        body = spec.model_dump(mode="json", exclude_none=True)
        return TaskInfo.model_validate_json(self.request("POST", "/tasks", json=body).content)

    def submit_batch(self, specs: list[TaskSpec]) -> list[TaskInfo]:
        """Submit up to ``models.MAX_BATCH`` tasks in one request: their infos, in order.

        A spec given more than once (the same object: ``submit_many`` with a count) is dumped once.
        """
        dumped = {id(spec): spec.model_dump(mode="json", exclude_none=True) for spec in specs}
        body = {"tasks": [dumped[id(spec)] for spec in specs]}
        return TaskBatchInfo.model_validate_json(self.request("POST", "/tasks/batch", json=body).content).tasks

    def upload_limit(self) -> int:
        """The largest task folder (packed) the server takes, in bytes: its TASKYARD_MAX_UPLOAD_MB."""
        if self._upload_limit is None:
            from taskyard import settings

            answer = self.request("GET", "/health").json()
            self._upload_limit = int(answer.get("max_upload_bytes") or settings.max_upload_bytes())
        return self._upload_limit

    def upload_bundle(self, task_id: str, path: Path) -> TaskInfo:
        """Upload the packed task folder, in pieces; a large one shows a progress bar on a terminal."""
        from taskyard import upload_progress

        with open(path, "rb") as data, upload_progress.bar(path.stat().st_size) as advance:
            pieces = upload_progress.pieces(data, advance)
            response = self.request("PUT", f"/tasks/{task_id}/bundle", content=pieces, timeout=600)
        return TaskInfo.model_validate_json(response.content)

    def task(self, task_id: str) -> TaskInfo:
        return TaskInfo.model_validate_json(self.request("GET", f"/tasks/{task_id}").content)

    def wait(self, task_id: str, timeout: float = 30) -> TaskInfo:
        response = self.request("GET", f"/tasks/{task_id}/wait", params={"timeout": timeout}, timeout=timeout + 30)
        return TaskInfo.model_validate_json(response.content)

    def logs(self, task_id: str, *, after: int = 0, wait: float = 0) -> LogPage:
        params = {"after": after, "wait": wait}
        response = self.request("GET", f"/tasks/{task_id}/logs", params=params, timeout=wait + 30)
        return LogPage.model_validate_json(response.content)

    def tail(self, task_id: str, max_bytes: int) -> str:
        return self.request("GET", f"/tasks/{task_id}/logs/tail", params={"max_bytes": max_bytes}).text

    def kill(self, task_id: str) -> TaskInfo:
        return TaskInfo.model_validate_json(self.request("POST", f"/tasks/{task_id}/kill").content)

    def callbacks(self, task_id: str) -> CallbackList:
        return CallbackList.model_validate_json(self.request("GET", f"/tasks/{task_id}/callbacks").content)

    def resend_callback(self, task_id: str) -> CallbackDelivery:
        response = self.request("POST", f"/tasks/{task_id}/callbacks/resend")
        return CallbackDelivery.model_validate_json(response.content)

    def signing_secret(self) -> str:
        return SigningSecret.model_validate_json(self.request("GET", "/callbacks/signing-secret").content).secret

    def push_folder(self, name: str, folder: Path) -> FolderInfo:
        """Pack ``folder`` and store it on the server as ``name`` (for a Task Runner request's ``files``)."""
        from taskyard import bundle

        with bundle.pack(folder) as packed, open(packed.path, "rb") as data:
            params = {"sha256": packed.sha256}
            response = self.request("PUT", f"/folders/{quote(name, safe='')}", params=params, content=data, timeout=600)
        return FolderInfo.model_validate_json(response.content)

    def folders(self) -> list[FolderInfo]:
        return [FolderInfo.model_validate(item) for item in self.request("GET", "/folders").json()]

    def list_tasks(self, *, limit: int = 50, cursor: str | None = None, status: str | None = None) -> TaskPage:
        params = {k: v for k, v in {"limit": limit, "cursor": cursor, "status": status}.items() if v is not None}
        return TaskPage.model_validate_json(self.request("GET", "/tasks", params=params).content)

    def output_files(self, task_id: str) -> OutputFiles:
        """The files in the task's outputs and their sizes (NotFound while it has none)."""
        return OutputFiles.model_validate_json(self.request("GET", f"/tasks/{task_id}/outputs/files").content)

    def output_tail(self, task_id: str, name: str, lines: int) -> str:
        """The last ``lines`` lines of file ``name`` of the task's outputs."""
        return self.request("GET", f"/tasks/{task_id}/outputs/tail", params={"name": name, "lines": lines}).text

    def metadata(self, task_id: str) -> dict[str, str]:
        return TaskMetadata.model_validate_json(self.request("GET", f"/tasks/{task_id}/metadata").content).metadata

    def set_metadata(self, task_id: str, values: dict[str, str]) -> dict[str, str]:
        """Merge ``values`` into the task's metadata; return all of it."""
        response = self.request("PATCH", f"/tasks/{task_id}/metadata", json={"metadata": values})
        return TaskMetadata.model_validate_json(response.content).metadata

    def download_outputs(self, task_id: str, dest: Path) -> str:
        """Save the outputs archive to ``dest``; return ``"result"`` or ``"partial"``."""

        def start(base: str) -> httpx.Response:
            request = self._http.build_request("GET", f"{base}/api/v1/tasks/{task_id}/outputs")
            return self._http.send(request, stream=True)

        response = self._in_turn(start, "GET")
        try:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            return response.headers.get("X-Taskyard-Outputs", "result")
        finally:
            response.close()

    # -- workers and users --------------------------------------------------------------------------

    def workers(self, *, include_ended: bool = False) -> list[WorkerInfo]:
        response = self.request("GET", "/workers", params={"all": include_ended})
        return [WorkerInfo.model_validate(w) for w in response.json()]

    def worker(self, name: str) -> WorkerInfo:
        return WorkerInfo.model_validate_json(self.request("GET", f"/workers/{name}").content)

    def terminate_worker(self, name: str) -> WorkerInfo:
        return WorkerInfo.model_validate_json(self.request("POST", f"/workers/{name}/terminate").content)

    def worker_logs(self, name: str, max_bytes: int) -> str:
        return self.request("GET", f"/workers/{name}/logs", params={"max_bytes": max_bytes}).text

    def exec_in_worker(self, name: str, request: ExecRequest) -> ExecResult:
        body = request.model_dump(mode="json", exclude_none=True)
        response = self.request("POST", f"/workers/{name}/exec", json=body, timeout=request.timeout + 60)
        return ExecResult.model_validate_json(response.content)

    def open_notebook(self, name: str) -> NotebookServerInfo:
        response = self.request("POST", f"/workers/{name}/notebook", timeout=240)
        return NotebookServerInfo.model_validate_json(response.content)

    def open_shell(self, name: str, *, tty: bool) -> ShellDoorInfo:
        response = self.request("POST", f"/workers/{name}/shell", params={"tty": tty}, timeout=60)
        return ShellDoorInfo.model_validate_json(response.content)

    def create_worker(self, request: WorkerRequest) -> WorkerInfo:
        body = request.model_dump(mode="json", exclude_none=True)
        return WorkerInfo.model_validate_json(self.request("POST", "/workers", json=body).content)

    def upload_to_worker(self, name: str, archive: Path, destination: str) -> list[str]:
        """Unpack ``archive`` (a gzip'd tar) into ``destination`` of the worker's task folder; the names written."""
        params = {"destination": destination}
        response = self.request("PUT", f"/workers/{name}/files", params=params, content=archive.read_bytes(),
                                timeout=600)
        return list(response.json().get("names", []))

    def download_from_worker(self, name: str, source: str, dest: Path) -> None:
        """Save ``source`` of the worker's task folder, as a gzip'd tar, to ``dest``."""
        response = self.request("GET", f"/workers/{name}/files", params={"source": source}, timeout=600)
        dest.write_bytes(response.content)

    def images(self) -> list[ImageInfo]:
        """The worker images the server's backend can start, the default first."""
        return [ImageInfo.model_validate(image) for image in self.request("GET", "/images").json()]

    def sizes(self) -> SizeCatalog:
        """The worker sizes the server offers, and what its backend's host holds."""
        return SizeCatalog.model_validate_json(self.request("GET", "/sizes").content)

    def create_pool(self, spec: PoolSpec) -> PoolInfo:
        response = self.request("POST", "/pools", json=spec.model_dump(mode="json", exclude_none=True))
        return PoolInfo.model_validate_json(response.content)

    def pools(self) -> list[PoolInfo]:
        return [PoolInfo.model_validate(p) for p in self.request("GET", "/pools").json()]

    def pool(self, name: str) -> PoolInfo:
        return PoolInfo.model_validate_json(self.request("GET", f"/pools/{name}").content)

    def delete_pool(self, name: str) -> None:
        self.request("DELETE", f"/pools/{name}")

    def add_user(self, name: str, *, is_admin: bool = False, expires_in: float | str | None = None) -> UserInfo:
        body = {"name": name, "is_admin": is_admin, "expires_in": expires_in}
        response = self.request("POST", "/users", json=body)
        return UserInfo.model_validate_json(response.content)

    def remove_user(self, name: str) -> None:
        self.request("DELETE", f"/users/{quote(name, safe='')}")

    def rotate_token(self, name: str, *, expires_in: float | str | None = None) -> UserInfo:
        """A new token for ``name`` (yourself, or anyone for an admin); the old one stops working."""
        response = self.request("POST", f"/users/{quote(name, safe='')}/token", json={"expires_in": expires_in})
        return UserInfo.model_validate_json(response.content)

    def users(self) -> list[UserInfo]:
        return [UserInfo.model_validate(u) for u in self.request("GET", "/users").json()]

    def me(self) -> UserInfo:
        return UserInfo.model_validate_json(self.request("GET", "/me").content)

    # -- groups (a pool shared with "group:NAME" is usable by the group's members) -------------------

    def create_group(self, name: str) -> GroupInfo:
        """Make an empty group (admins only)."""
        return GroupInfo.model_validate_json(self.request("POST", "/groups", json={"name": name}).content)

    def groups(self) -> list[GroupInfo]:
        """Every group for an admin; your own groups for anyone else."""
        return [GroupInfo.model_validate(g) for g in self.request("GET", "/groups").json()]

    def group(self, name: str) -> GroupInfo:
        return GroupInfo.model_validate_json(self.request("GET", f"/groups/{quote(name, safe='')}").content)

    def add_to_group(self, name: str, user: str) -> GroupInfo:
        """Put ``user`` in the group (admins only; nothing changes if they are in it already)."""
        response = self.request("PUT", f"/groups/{quote(name, safe='')}/members/{quote(user, safe='')}")
        return GroupInfo.model_validate_json(response.content)

    def remove_from_group(self, name: str, user: str) -> GroupInfo:
        """Take ``user`` out of the group (admins only); the pools shared with it are no longer theirs."""
        response = self.request("DELETE", f"/groups/{quote(name, safe='')}/members/{quote(user, safe='')}")
        return GroupInfo.model_validate_json(response.content)

    def delete_group(self, name: str) -> None:
        """Delete the group (admins only): its members lose the pools shared with it."""
        self.request("DELETE", f"/groups/{quote(name, safe='')}")

    # -- the vault ----------------------------------------------------------------------------------

    def put_secret(self, name: str, value: str, *, shared: bool = False) -> SecretInfo:
        response = self.request("PUT", _secret_path(name), params={"shared": shared}, json={"value": value})
        return SecretInfo.model_validate_json(response.content)

    def secret(self, name: str, *, shared: bool = False) -> SecretValue:
        response = self.request("GET", _secret_path(name), params={"shared": shared})
        return SecretValue.model_validate_json(response.content)

    def delete_secret(self, name: str, *, shared: bool = False) -> None:
        self.request("DELETE", _secret_path(name), params={"shared": shared})

    def secrets(self) -> list[SecretInfo]:
        return [SecretInfo.model_validate(s) for s in self.request("GET", "/secrets").json()]

    def rotate_vault_key(self) -> KeyRotation:
        return KeyRotation.model_validate_json(self.request("POST", "/secrets/rotate-key", timeout=300).content)


def _secret_path(name: str) -> str:
    return f"/secrets/{quote(name, safe='')}"


def _elsewhere(method: str, exc: httpx.TransportError) -> bool:
    """Whether a request that failed with ``exc`` may go to another server: it never arrived, or it only reads."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) or method in ("GET", "HEAD")


def _error(response: httpx.Response) -> TaskyardError:
    try:
        return error_from_dict(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return TaskyardError(f"server answered {response.status_code}: {response.text[:500]}")


_default: Client | None = None


def default_client() -> Client:
    """The client for ``TASKYARD_URL`` / ``TASKYARD_TOKEN``, or for the embedded server (started if need be)."""
    global _default
    if _default is None:
        from taskyard import embedded, settings

        url, token = settings.server_url(), settings.token()
        if url is None:
            url, token = embedded.ensure_running()
        elif token is None:
            raise TaskyardError("TASKYARD_URL is set but TASKYARD_TOKEN is not; set both, or neither")
        _default = Client(url, token)
    return _default


def reset_default_client() -> None:
    global _default
    if _default is not None:
        _default.close()
    _default = None
