"""The URL workers reach the control plane at: ``advertise_url`` when given, else one made from the bind address."""

from __future__ import annotations

from taskyard.errors import ConfigError
from taskyard.server.config import ServerConfig

WILDCARDS = ("0.0.0.0", "::", "")  # bind addresses that mean "every interface"


def agent_url(config: ServerConfig, host: str, port: int) -> str:
    """Where agents call the control plane listening on ``host``:``port``.

    Without ``advertise_url``, a wildcard address becomes 127.0.0.1, which only workers on this
    machine reach: so a configuration with a remote backend that listens on a wildcard address
    must say its URL (ConfigError otherwise).
    """
    if config.advertise_url:
        return config.advertise_url
    remote = config.remote_backends()
    if host in WILDCARDS and remote:
        kind = config.backends[remote[0]].type
        raise ConfigError(
            f"advertise_url: backend {remote[0]!r} (type {kind}) starts workers on other machines, and the server "
            f"listens on {host or '0.0.0.0'}, so they need the URL that reaches it: give --advertise-url or "
            f"TASKYARD_ADVERTISE_URL (or advertise_url in the file), e.g. http://HOSTNAME:{port}"
        )
    return f"http://{'127.0.0.1' if host in WILDCARDS else _bracketed(host)}:{port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
