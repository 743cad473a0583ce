"""A real git server for tests: ``git http-backend`` behind a small HTTP server on 127.0.0.1.

Bare repositories live under a folder of their own: the ones in ``private/`` need HTTP Basic auth
with the server's token as the password (any user name, which the server notes), the ones in
``public/`` need nothing. The clone goes over HTTP, so a sandboxed task reaches them whatever the
folder's permissions.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

TOKEN = "ghp_Test0nly+Tok3n/with=odd%chars_8c1f"
GIT_ENV = {  # a repository made the same whoever makes it, and no user config read
    "GIT_AUTHOR_NAME": "Fixture",
    "GIT_AUTHOR_EMAIL": "fixture@example.com",
    "GIT_COMMITTER_NAME": "Fixture",
    "GIT_COMMITTER_EMAIL": "fixture@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git (fixture settings, no prompt); its stdout, or raise with its stderr."""
    environ = {**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    done = subprocess.run(["git", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["git", *args], done.stdout, done.stderr)
    return done.stdout


class GitServer:
    """Serves the bare repositories under ``root`` over git's smart HTTP protocol."""

    def __init__(self, root: Path, token: str = TOKEN) -> None:
        self.root = root
        self.token = token
        self._usernames: dict[str, list[str]] = {}  # repository path -> user names of the requests with the token
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="git-server", daemon=True)

    def start(self) -> GitServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, repo: Path) -> str:
        """The HTTP address of bare repository ``repo`` (a folder under ``root``)."""
        return f"{self.base_url}/{repo.relative_to(self.root).as_posix()}"

    def usernames(self, url: str) -> list[str]:
        """The user names that came with the token in the requests for the repository at ``url``, in order."""
        return self._usernames.get(_repository_path(url.removeprefix(self.base_url)), [])

    def authorized(self, path: str, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token (and note its user name if so)."""
        if not header or not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if password != self.token:
            return False
        self._usernames.setdefault(_repository_path(path), []).append(user)
        return True


def _repository_path(path: str) -> str:
    """``/private/name.git`` of a request for ``/private/name.git/info/refs`` (and of the URL itself)."""
    return "/".join(path.split("/")[:3])


def _handler(server: GitServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            if path.startswith("/private/") and not server.authorized(path, self.headers.get("Authorization")):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.end_headers()
                return
            output = subprocess.run(
                ["git", "http-backend"], input=self._body(), env=self._cgi_env(path, query), capture_output=True
            ).stdout
            self._reply(output)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self._chunked_body()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _chunked_body(self) -> bytes:
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return body

        def _cgi_env(self, path: str, query: str) -> dict[str, str]:
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REMOTE_ADDR": self.client_address[0],
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            }
            for header in ("Content-Encoding", "Git-Protocol"):
                if self.headers.get(header):
                    env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
            return env

        def _reply(self, output: bytes) -> None:
            head, _, body = output.partition(b"\r\n\r\n")
            headers = [line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line]
            status = next((value.strip() for name, value in headers if name.lower() == "status"), "200 OK")
            self.send_response(int(status.split()[0]))
            for name, value in headers:
                if name.lower() != "status":
                    self.send_header(name, value.strip())
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


# -- repositories -----------------------------------------------------------------------------------


@dataclass
class Repo:
    """A bare repository the server serves, and what it holds."""

    url: str
    path: Path
    commits: int  # on main
    main_files: tuple[str, ...]  # the files of main's last commit
    feature_only: str  # a file only branch ``feature`` has


FILES = {
    "README.md": "# fixture\n",
    "docs/guide.md": "how to\n",
    "docs/api/index.md": "api\n",
    "src/app.py": "print('app')\n",
    "data/rows.csv": "a,b\n1,2\n",
}


def make_repo(server: GitServer, name: str, *, private: bool, filters: bool = True) -> Repo:
    """A bare repository ``name`` under the server's ``private/`` or ``public/`` folder: a few
    commits on ``main`` (one folder each), and a branch ``feature`` one commit ahead.

    With ``filters``, the server allows partial clones of it (``--filter``)."""
    bare = server.root / ("private" if private else "public") / f"{name}.git"
    work = Path(tempfile.mkdtemp(prefix="taskyard-git-work-"))
    try:
        git("init", "--quiet", "--initial-branch=main", str(work))
        for files in (["README.md"], ["docs/guide.md", "docs/api/index.md"], ["src/app.py"], ["data/rows.csv"]):
            _commit(work, {path: FILES[path] for path in files}, f"add {', '.join(files)}")
        git("checkout", "--quiet", "-b", "feature", cwd=work)
        _commit(work, {"feature.txt": "feature\n"}, "add feature.txt")
        git("clone", "--quiet", "--bare", str(work), str(bare))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant"):  # partial clones
        git("config", key, "true" if filters else "false", cwd=bare)
    return Repo(server.url(bare), bare, 4, tuple(sorted(FILES)), "feature.txt")


def _commit(work: Path, files: dict[str, str], message: str) -> None:
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def git_server(tmp_path_factory) -> Iterator[GitServer]:
    """One git HTTP server for the session; its token is ``TOKEN``."""
    server = GitServer(tmp_path_factory.mktemp("git-server")).start()
    yield server
    server.stop()


@pytest.fixture
def private_repo(git_server, request) -> Repo:
    """A repository of this test's own that needs the token (see ``make_repo``)."""
    return make_repo(git_server, _name(request), private=True)


@pytest.fixture
def public_repo(git_server, request) -> Repo:
    """A repository of this test's own that anyone may clone (see ``make_repo``)."""
    return make_repo(git_server, _name(request), private=False)


def _name(request) -> str:
    return "".join(char if char.isalnum() else "-" for char in request.node.name)[:80]
