"""Per module: one control plane, its two non-admin users (bob attacks, alice is attacked), alice's running task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskyard.client import Client

from hostile import Neighbour, start_neighbour, start_plane
from support import Server


@pytest.fixture(scope="module")
def plane() -> Iterator[Server]:
    yield from start_plane()


@pytest.fixture(scope="module")
def bob(plane) -> Client:
    return plane.user_client("bob")


@pytest.fixture(scope="module")
def alice_client(plane) -> Client:
    return plane.user_client("alice")


@pytest.fixture(scope="module")
def alice(plane, alice_client, tmp_path_factory) -> Iterator[Neighbour]:
    """Alice's task, running (asleep) in its worker for the whole module, a file of hers in its folder."""
    neighbour = start_neighbour(plane, alice_client, tmp_path_factory.mktemp("alice"))
    yield neighbour
    neighbour.task.kill(wait=False)
