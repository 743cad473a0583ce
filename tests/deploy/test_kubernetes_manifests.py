"""deploy/kubernetes: every object is valid against the Kubernetes OpenAPI schemas, and the server's file loads."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from taskyard.server.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
K8S_VERSION = "1.37.0"


def documents() -> list[tuple[str, dict]]:
    return [(f"{path.name}:{doc['kind']}", doc) for path in sorted(DEPLOY.glob("*.yaml"))
            if path.name != "kustomization.yaml" for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(("name", "manifest"), documents(), ids=[name for name, _ in documents()])
def test_manifest_is_valid(name, manifest) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_every_kind_the_install_needs_is_there() -> None:
    kinds = {doc["kind"] for _, doc in documents()}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret"} <= kinds
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert all((DEPLOY / name).exists() for name in listed)


def test_the_role_lets_the_server_manage_pods_and_secrets_in_its_namespace() -> None:
    role = next(doc for _, doc in documents() if doc["kind"] == "Role")
    rule = role["rules"][0]
    assert set(rule["resources"]) == {"pods", "secrets"}
    assert {"create", "get", "list", "delete", "patch"} <= set(rule["verbs"])


def test_the_database_url_comes_from_the_secret() -> None:
    deployment = next(doc for _, doc in documents() if doc["kind"] == "Deployment")
    env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TASKYARD_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "taskyard", "key": "db-url"}


def test_the_server_configuration_loads(tmp_path, monkeypatch) -> None:
    config_map = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap")
    path = tmp_path / "server.toml"
    path.write_text(config_map["data"]["server.toml"])
    monkeypatch.setenv("TASKYARD_HOME", str(tmp_path / "home"))
    config = load_config(path)
    assert config.backends["pods"].type == "kubernetes"


def test_the_readme_kubernetes_example_is_a_valid_config(tmp_path, monkeypatch) -> None:
    readme = (DEPLOY.parents[1] / "README.md").read_text()
    [example] = [block.split("```", 1)[0] for block in readme.split("```toml\n")[1:] if "[backends.pods]" in block]
    path = tmp_path / "server.toml"
    path.write_text(example)
    monkeypatch.setenv("TASKYARD_HOME", str(tmp_path / "home"))
    pods = load_config(path).backends["pods"]
    assert pods.images["cuda"] == "ghcr.io/acme/cuda-worker:12" and pods.time_to_live == 86400
    assert pods.tolerations == ({"key": "spot", "operator": "Exists", "effect": "NoSchedule"},)
