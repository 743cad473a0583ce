"""The git repositories cloned for a task, and the access token that may come with each.

An assignment's ``git_configs`` are the task's ``GitConfig`` entries as dicts (the keys of
``taskyard.config.GitConfig``, None values left out), and ``"token"`` (a str) in an entry whose
remote wants one: the HTTPS access token, read by the control plane from the vault secret that
``secret_name`` names.

The token reaches git through a credential helper that reads it from an environment variable,
``TASKYARD_GIT_TOKEN_<n>`` (n: the repository's place in ``git_configs``, from 0), set only for the
git commands of the clone, and for the task itself when ``save_secret`` is true. The helper is
given on git's command line (``-c``, which git writes nowhere) for the clone, and in the task's
``$HOME/.gitconfig`` with ``save_secret``; either way it holds the variable's name, never the token,
so the token is in no URL, no argument list (``ps``), no file of the clone or the home folder.
The helper answers for the remote's URL (and the URLs below it) only, and replaces any other
helper configured for it there, so no helper stores the token either. ``GIT_TERMINAL_PROMPT=0``
makes a missing or wrong token fail at once instead of waiting for a password nobody types.
Whatever the agent reports of git's output has the token masked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .masking import Masker

TOKEN_VARIABLE = "TASKYARD_GIT_TOKEN"
#: the user name that goes with a token when the entry gives none (GitHub's, for app and personal tokens)
DEFAULT_USERNAME = "x-access-token"
# A sandboxed task runs as a user of its own: a local repository it clones from is someone else's.
HOME_CONFIG = "[safe]\n\tdirectory = *\n"
IDENTITY = {"username": "user.name", "email": "user.email"}  # GitConfig field -> the clone's git setting
MAX_MESSAGE = 2000  # the most of git's output a failure's message quotes

#: starts a command (sandboxed, with these variables added to the task's): its exit code and output
Run = Callable[[list[str], dict[str, str]], tuple[int, str]]


class Repository:
    """The ``index``-th entry of an assignment's ``git_configs``."""

    def __init__(self, config: dict, index: int) -> None:
        self.config = config
        self.url: str = config["remote_url"]
        self.token: str | None = config.get("token") or None
        self.variable = f"{TOKEN_VARIABLE}_{index}"

    @property
    def dest(self) -> str:
        """Where the clone goes, relative to the task folder: ``local_path``, else the repository's name."""
        name = self.url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return self.config.get("local_path") or name.removesuffix(".git")

    @property
    def uses_token(self) -> bool:
        """Whether git is given the token: there is one, and the remote speaks HTTP(S)."""
        return self.token is not None and self.url.lower().startswith(("https://", "http://"))

    @property
    def saves_secret(self) -> bool:
        """Whether the task's own git commands get the token too (``save_secret``)."""
        return self.uses_token and bool(self.config.get("save_secret"))

    def credential_settings(self) -> list[tuple[str, str]]:
        """The git settings (key, value) that hand git this URL's token: an empty helper first,
        which drops the helpers configured before, then ours, and the user name."""
        if not self.uses_token:
            return []
        section = f"credential.{self.url}"
        username = self.config.get("username") or DEFAULT_USERNAME
        return [
            (f"{section}.helper", ""),
            (f"{section}.helper", helper(self.variable)),
            (f"{section}.username", username),
        ]

    def commands(self) -> list[tuple[list[str], str]]:
        """The git commands that make the clone, each with what it does (for messages)."""
        steps = [(self._clone_command(), f"git clone of {self.url}")]
        folders = self.config.get("sparse_checkout_folders")
        if folders:
            command = self._git("-C", self.dest, "sparse-checkout", "set", "--", *folders)
            steps.append((command, f"git sparse-checkout in {self.dest}"))
        return steps

    def _clone_command(self) -> list[str]:
        options = ["--quiet"]
        if self.config.get("branch"):
            options += ["--branch", self.config["branch"]]
        if self.config.get("fetch_depth"):
            options += ["--depth", str(self.config["fetch_depth"])]
        if self.config.get("sparse_checkout_folders"):  # a partial clone, or a full one where the server has no filters
            options += ["--filter=blob:none", "--sparse"]
        for field, key in IDENTITY.items():
            if self.config.get(field):  # --config is written to the clone's own .git/config
                options += ["--config", f"{key}={self.config[field]}"]
        return self._git("clone", *options, "--", self.url, self.dest)

    def _git(self, *args: str) -> list[str]:
        """A git command line with the credential settings for this command only (``-c``)."""
        settings = [arg for key, value in self.credential_settings() for arg in ("-c", f"{key}={value}")]
        return ["git", *settings, *args]

    def env(self) -> dict[str, str]:
        """The variables the clone's commands get, added to the task's: the token, and no prompt."""
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if self.uses_token:
            env[self.variable] = self.token or ""
        return env

    def home_config(self) -> str:
        """This repository's part of the task's ``$HOME/.gitconfig``: its credential helper, with ``save_secret``."""
        if not self.saves_secret:
            return ""
        section = self.url.replace("\\", "\\\\").replace('"', '\\"')
        lines = [f"\t{key.rsplit('.', 1)[1]} = {_quoted(value)}\n" for key, value in self.credential_settings()]
        return f'[credential "{section}"]\n' + "".join(lines)


def helper(variable: str) -> str:
    """A credential helper (git runs it with ``sh``) that answers ``get`` with the password in ``$variable``,
    and nothing when that is empty; it ignores ``store`` and ``erase``."""
    value = f'"${variable}"'
    return f"!f() {{ if test \"$1\" = get && test -n {value}; then printf 'password=%s\\n' {value}; fi; }}; f"


def repositories(configs: Iterable[dict]) -> list[Repository]:
    """The repositories of an assignment's ``git_configs``, in order."""
    return [Repository(config, index) for index, config in enumerate(configs)]


def home_config(repos: list[Repository]) -> str:
    """The task's ``$HOME/.gitconfig``: every repository is safe to use, and each one with
    ``save_secret`` has its credential helper."""
    return HOME_CONFIG + "".join(repo.home_config() for repo in repos)


def task_env(repos: list[Repository]) -> dict[str, str]:
    """The variables the task gets for its own git commands: the tokens of the repositories with ``save_secret``."""
    return {repo.variable: repo.token or "" for repo in repos if repo.saves_secret}


def clone(repo: Repository, run: Run, log: Callable[[str], None]) -> None:
    """Clone ``repo`` into the task folder, each git command started by ``run``.

    What git prints goes to ``log``, the token masked. If a command fails, raise RuntimeError
    with (the end of) git's message, masked too, and run no further command.
    """
    for command, what in repo.commands():
        code, output = run(command, repo.env())
        output = _masked(output, repo.token)
        if code != 0:
            raise RuntimeError(f"{what} failed with exit code {code}: {_tail(output) or 'git said nothing'}")
        if output:
            log(output)


def _masked(text: str, token: str | None) -> str:
    masker = Masker.of([token] if token else [])
    return text if masker is None else masker.mask(text)


def _tail(output: str) -> str:
    output = output.strip()
    return output if len(output) <= MAX_MESSAGE else "..." + output[-MAX_MESSAGE:]


def _quoted(value: str) -> str:
    """``value`` as a git config file writes it: in double quotes, with ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def missing_task_file(file_name: str, repos: list[Repository]) -> str:
    """Why the task file is not there, saying where it was looked for."""
    top, _, rest = file_name.partition("/")
    for repo in repos:
        if rest and repo.dest == top:
            return f"{file_name} was not found: there is no {rest} in the clone of {repo.url} (cloned into {top}/)"
    if not repos:
        return f"{file_name} is not in the uploaded files"
    clones = ", ".join(f"{repo.url} into {repo.dest}/" for repo in repos)
    return f"{file_name} is neither in the uploaded files nor in the clones ({clones})"
