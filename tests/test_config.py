import base64
import json

import pytest
from pydantic import BaseModel, ValidationError

from taskyard.config import GitConfig, WorkerConfig, secret_ref

SEED_JSON = (
    '{"worker_image":"practicus","worker_size":"X-Small","additional_params":'
    '"eyJlbnZfdmFyaWFibGVzIjogeyJNWV9GSVJTVF9QQVJBTSI6ICJWQUxVRTEiLCAiTVlfU0VDT05EX1BBUkFNIjogMTIzfX0="}'
)


def seed_config() -> WorkerConfig:
    return WorkerConfig(
        worker_image="practicus",
        worker_size="X-Small",
        env_variables={"MY_FIRST_PARAM": "VALUE1", "MY_SECOND_PARAM": 123},
    )


def full_config() -> WorkerConfig:
    return WorkerConfig(
        worker_image="practicus-gpu",
        worker_size="large",
        env_variables={"S": "text", "I": 7, "F": 1.5, "B": True, "U": "ünïcode"},
        startup_script="pip install -r requirements.txt\necho ready",
        git_configs=[
            GitConfig(remote_url="https://github.com/example/repo.git", secret_name="git_secret"),
            GitConfig(
                remote_url="git@github.com:example/other.git",
                username="me",
                email="me@example.com",
                local_path="src/other",
                branch="dev",
                fetch_depth=1,
            ),
        ],
        personal_secrets=["git_secret", "db.password-2"],
    )


def pack(extras: object) -> str:
    return base64.b64encode(json.dumps(extras).encode()).decode()


def decoded_extras(cfg: WorkerConfig) -> dict:
    return json.loads(base64.b64decode(cfg.model_dump()["additional_params"]))


def error_text(exc_info: pytest.ExceptionInfo) -> str:
    return str(exc_info.value)


# --- the seed's wire form ---------------------------------------------------------------------------


def test_seed_json_byte_for_byte():
    assert seed_config().model_dump_json(exclude_none=True) == SEED_JSON


def test_seed_payload_decodes_to_env_variables_only():
    payload = json.loads(SEED_JSON)["additional_params"]
    raw = base64.b64decode(payload).decode()
    assert raw == '{"env_variables": {"MY_FIRST_PARAM": "VALUE1", "MY_SECOND_PARAM": 123}}'
    assert json.loads(raw) == {"env_variables": {"MY_FIRST_PARAM": "VALUE1", "MY_SECOND_PARAM": 123}}


def test_seed_json_parses_back_with_types_kept():
    cfg = WorkerConfig.model_validate_json(SEED_JSON)
    assert cfg == seed_config()
    assert cfg.env_variables == {"MY_FIRST_PARAM": "VALUE1", "MY_SECOND_PARAM": 123}
    assert type(cfg.env_variables["MY_SECOND_PARAM"]) is int
    assert cfg.additional_params is None


def test_extras_key_order():
    assert list(decoded_extras(full_config())) == [
        "env_variables",
        "personal_secrets",
        "git_configs",
        "startup_script",
    ]


def test_git_configs_packed_without_none_fields():
    git = decoded_extras(full_config())["git_configs"]
    assert git[0] == {"remote_url": "https://github.com/example/repo.git", "secret_name": "git_secret"}
    assert git[1]["fetch_depth"] == 1


# --- exclude_none and other dump options ----------------------------------------------------------


def test_dump_without_exclude_none_keeps_none_fields():
    assert WorkerConfig(worker_size="Small").model_dump() == {
        "worker_image": None,
        "worker_size": "Small",
        "additional_params": None,
    }
    assert WorkerConfig().model_dump_json() == '{"worker_image":null,"worker_size":null,"additional_params":null}'


def test_dump_with_exclude_none_drops_none_fields():
    cfg = WorkerConfig(worker_size="Small")
    assert cfg.model_dump(exclude_none=True) == {"worker_size": "Small"}
    assert cfg.model_dump_json(exclude_none=True) == '{"worker_size":"Small"}'
    assert WorkerConfig().model_dump_json(exclude_none=True) == "{}"


def test_dump_writes_only_the_three_wire_fields():
    dumped = full_config().model_dump()
    assert list(dumped) == ["worker_image", "worker_size", "additional_params"]


def test_exclude_none_applies_when_nested():
    class Request(BaseModel):
        worker_config: WorkerConfig
        callback_url: str | None = None

    request = Request(worker_config=WorkerConfig(worker_size="Small"))
    assert request.model_dump_json(exclude_none=True) == '{"worker_config":{"worker_size":"Small"}}'
    assert request.model_dump()["worker_config"]["additional_params"] is None


def test_include_exclude_and_exclude_unset():
    cfg = seed_config()
    assert cfg.model_dump(include={"worker_size"}) == {"worker_size": "X-Small"}
    assert "worker_image" not in cfg.model_dump(exclude={"worker_image"})
    assert WorkerConfig(worker_size="Small").model_dump(exclude_unset=True) == {"worker_size": "Small"}


def test_empty_env_variables_still_written():
    cfg = WorkerConfig(env_variables={})
    assert decoded_extras(cfg) == {"env_variables": {}}
    assert WorkerConfig.model_validate_json(cfg.model_dump_json()) == cfg


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        WorkerConfig(),
        WorkerConfig(worker_size="medium"),
        WorkerConfig(startup_script="echo hi"),
        WorkerConfig(personal_secrets=["only_secret"]),
        WorkerConfig(git_configs=[GitConfig(remote_url="/srv/git/repo.git")]),
        WorkerConfig(python_requirements=["six==1.16.0", "idna>=3"]),
        WorkerConfig(python_requirements="requirements/base.txt"),
        seed_config(),
        full_config(),
    ],
)
def test_round_trip(cfg):
    assert WorkerConfig.model_validate_json(cfg.model_dump_json(exclude_none=True)) == cfg
    assert WorkerConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert WorkerConfig.model_validate(cfg.model_dump()) == cfg


def test_round_trip_keeps_value_types():
    parsed = WorkerConfig.model_validate_json(full_config().model_dump_json(exclude_none=True))
    types = {name: type(value) for name, value in parsed.env_variables.items()}
    assert types == {"S": str, "I": int, "F": float, "B": bool, "U": str}


def test_from_file(tmp_path):
    path = tmp_path / "task_worker.json"
    path.write_text(full_config().model_dump_json(exclude_none=True), encoding="utf-8")
    assert WorkerConfig.from_file(path) == full_config()
    assert WorkerConfig.from_file(str(path)) == full_config()


# --- parsing the seed's other inputs --------------------------------------------------------------


def test_default_worker_json_parses():
    raw = '{"worker_image":"practicus","worker_size":"Small","service_url":"","email":"","refresh_token":""}'
    cfg = WorkerConfig.model_validate_json(raw)
    assert cfg == WorkerConfig(worker_image="practicus", worker_size="Small")


def test_task_runner_example_parses():
    cfg = WorkerConfig.model_validate(
        {
            "worker_size": "small",
            "personal_secrets": ["git_secret"],
            "git_configs": [{"remote_url": "https://github.com/example/repo.git", "secret_name": "git_secret"}],
        }
    )
    assert cfg.worker_size == "small"  # kept as given: the server matches it in any letter case
    assert cfg.personal_secrets == ["git_secret"]
    assert cfg.git_configs == [GitConfig(remote_url="https://github.com/example/repo.git", secret_name="git_secret")]


def test_unknown_top_level_key_refused():
    with pytest.raises(ValidationError, match="worker_sise"):
        WorkerConfig.model_validate({"worker_sise": "Small"})


def test_unknown_git_config_key_refused():
    with pytest.raises(ValidationError, match="remote"):
        GitConfig.model_validate({"remote_url": "https://x/y.git", "remote": "oops"})


# --- worker size and image ------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["small", "X-Small", "X-LARGE", "gpu.large_2", "a" * 32])
def test_worker_size_is_kept_as_given(given):
    # Which sizes exist is the server's to say (taskyard sizes); it matches them in any letter case.
    assert WorkerConfig(worker_size=given).worker_size == given


@pytest.mark.parametrize("given", ["", "Huge size", "x/y", "a" * 33, "größe"])
def test_implausible_worker_size_refused(given):
    with pytest.raises(ValidationError) as exc_info:
        WorkerConfig(worker_size=given)
    assert f"worker_size {given!r} is not a size name; use 1-32 letters, digits" in error_text(exc_info)


@pytest.mark.parametrize("image", ["", "my image", " practicus", "practicus\n"])
def test_bad_worker_image_refused(image):
    with pytest.raises(ValidationError, match="worker_image"):
        WorkerConfig(worker_image=image)


# --- env variables and secrets --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["1ABC", "MY-VAR", "", "A B", "É", "A\n"])
def test_bad_env_name_refused(name):
    with pytest.raises(ValidationError, match="invalid env variable name"):
        WorkerConfig(env_variables={name: "x"})


@pytest.mark.parametrize("value", [None, [1, 2], {"a": 1}, b"bytes", float("nan"), "a\0b"])
def test_bad_env_value_refused_naming_the_variable(value):
    with pytest.raises(ValidationError, match="env variable 'MY_VAR'"):
        WorkerConfig(env_variables={"MY_VAR": value})


def test_env_variables_must_be_a_mapping():
    with pytest.raises(ValidationError, match="env_variables must be a mapping"):
        WorkerConfig(env_variables=["A=1"])


def test_env_values_keep_their_types():
    cfg = WorkerConfig(env_variables={"A": "1", "B": 1, "C": 1.0, "D": False})
    assert [type(value) for value in cfg.env_variables.values()] == [str, int, float, bool]


def test_env_as_strings():
    cfg = WorkerConfig(env_variables={"A": "x", "B": 123, "C": 1.5, "D": True, "E": False})
    assert cfg.env_as_strings() == {"A": "x", "B": "123", "C": "1.5", "D": "True", "E": "False"}
    assert WorkerConfig().env_as_strings() == {}


@pytest.mark.parametrize("name", ["", "has space", "a/b", "ü"])
def test_bad_secret_name_refused(name):
    with pytest.raises(ValidationError, match="invalid personal secret name"):
        WorkerConfig(personal_secrets=[name])


def test_secrets_may_be_renamed_and_shared_ones_travel_in_additional_params():
    cfg = WorkerConfig(personal_secrets=["db.password:DB_PASSWORD", "TOKEN"], shared_secrets=["REGISTRY:REG"])
    assert decoded_extras(cfg) == {
        "personal_secrets": ["db.password:DB_PASSWORD", "TOKEN"],
        "shared_secrets": ["REGISTRY:REG"],
    }
    assert WorkerConfig.model_validate_json(cfg.model_dump_json(exclude_none=True)) == cfg
    assert [secret_ref(ref) for ref in cfg.personal_secrets] == [("db.password", "DB_PASSWORD"), ("TOKEN", "TOKEN")]


@pytest.mark.parametrize("ref", ["NAME:", "NAME:1ENV", "NAME:A-B", ":ENV", "A:B:C"])
def test_bad_secret_renames_refused(ref):
    with pytest.raises(ValidationError, match="invalid shared secret name"):
        WorkerConfig(shared_secrets=[ref])


# --- git configs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/example/repo.git",
        "http://git.local/repo.git",
        "ssh://git@github.com/example/repo.git",
        "git@github.com:example/repo.git",
        "file:///srv/git/repo.git",
        "/srv/git/repo.git",
    ],
)
def test_good_remote_urls(url):
    assert GitConfig(remote_url=url).remote_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "remote_url must not be empty"),
        ("   ", "remote_url must not be empty"),
        ("ftp://example.com/repo.git", "unsupported remote_url"),
        ("github.com/example/repo.git", "unsupported remote_url"),
        ("relative/path", "unsupported remote_url"),
        ("https://", "unsupported remote_url"),
    ],
)
def test_bad_remote_urls(url, message):
    with pytest.raises(ValidationError, match=message):
        GitConfig(remote_url=url)


def test_remote_url_required():
    with pytest.raises(ValidationError, match="remote_url"):
        GitConfig.model_validate({"secret_name": "s"})


@pytest.mark.parametrize("path", ["../outside", "a/../../b", "a/..", "a\\..\\b"])
def test_local_path_with_dotdot_refused(path):
    with pytest.raises(ValidationError, match="must not contain '..'"):
        GitConfig(remote_url="https://x/y.git", local_path=path)


@pytest.mark.parametrize("path", ["/abs/path", "\\abs", "C:\\repo"])
def test_absolute_local_path_refused(path):
    with pytest.raises(ValidationError, match="must be relative"):
        GitConfig(remote_url="https://x/y.git", local_path=path)


def test_relative_local_path_accepted():
    assert GitConfig(remote_url="https://x/y.git", local_path="libs/..hidden").local_path == "libs/..hidden"


def test_python_requirements_travel_in_additional_params():
    cfg = WorkerConfig(python_requirements=["six==1.16.0"])
    assert decoded_extras(cfg) == {"python_requirements": ["six==1.16.0"]}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["-r base.txt"], "-r is not supported"),
        (["/wheels/x.whl"], "a local path is not supported"),
        ("../requirements.txt", "must be a file name relative to the task folder"),
        ("/etc/requirements.txt", "must be a file name relative to the task folder"),
        ("", "must be a file name"),
    ],
)
def test_python_requirements_a_cache_cannot_stand_for_are_refused(given, message):
    with pytest.raises(ValidationError, match=message):
        WorkerConfig(python_requirements=given)


def test_fetch_depth_must_be_positive():
    with pytest.raises(ValidationError, match="fetch_depth"):
        GitConfig(remote_url="https://x/y.git", fetch_depth=0)


@pytest.mark.parametrize(
    ("folders", "message"),
    [
        ([], "must name at least one folder"),
        (["docs", "../up"], "must not contain '..'"),
        (["/etc"], "must be relative to the repository"),
        ([""], "sparse_checkout_folders must not be empty"),
        (["--cone"], "git cannot take as a folder"),
        (["a\nb"], "git cannot take as a folder"),
    ],
)
def test_sparse_checkout_folders_are_relative_folders(folders, message):
    with pytest.raises(ValidationError, match=message):
        GitConfig(remote_url="https://x/y.git", sparse_checkout_folders=folders)


def test_the_practicus_git_fields_travel_in_additional_params():
    git = GitConfig(remote_url="https://x/y.git", sparse_checkout_folders=["docs", "src/lib"], save_secret=True)
    cfg = WorkerConfig(git_configs=[git])
    assert decoded_extras(cfg)["git_configs"] == [
        {"remote_url": "https://x/y.git", "sparse_checkout_folders": ["docs", "src/lib"], "save_secret": True}
    ]
    assert WorkerConfig.model_validate_json(cfg.model_dump_json()).git_configs == [git]


# --- additional_params on input -------------------------------------------------------------------


def test_additional_params_merged_with_top_level_fields():
    cfg = WorkerConfig.model_validate(
        {
            "worker_size": "Small",
            "startup_script": "echo hi",
            "additional_params": pack({"personal_secrets": ["s"]}),
        }
    )
    assert cfg == WorkerConfig(worker_size="Small", startup_script="echo hi", personal_secrets=["s"])
    assert cfg.additional_params is None


def test_additional_params_given_to_constructor_is_unpacked():
    cfg = WorkerConfig(additional_params=pack({"env_variables": {"A": 1}}))
    assert cfg.env_variables == {"A": 1}
    assert cfg.additional_params is None


def test_same_value_in_both_places_accepted():
    git = {"remote_url": "https://x/y.git", "branch": "main"}
    cfg = WorkerConfig.model_validate(
        {"git_configs": [GitConfig(**git)], "additional_params": pack({"git_configs": [git]})}
    )
    assert cfg.git_configs == [GitConfig(**git)]


def test_conflicting_key_refused():
    with pytest.raises(ValidationError, match="env_variables is given both top-level and in additional_params"):
        WorkerConfig.model_validate(
            {"env_variables": {"A": "1"}, "additional_params": pack({"env_variables": {"A": "2"}})}
        )


@pytest.mark.parametrize("packed", ["not base64!", "aGVsbG8", base64.b64encode(b"not json").decode(), "//79"])
def test_invalid_additional_params_refused(packed):
    with pytest.raises(ValidationError, match="additional_params is not base64-encoded JSON"):
        WorkerConfig.model_validate({"additional_params": packed})


def test_additional_params_must_hold_an_object():
    with pytest.raises(ValidationError, match="additional_params must hold a JSON object"):
        WorkerConfig.model_validate({"additional_params": pack(["env_variables"])})


def test_additional_params_must_be_a_string():
    with pytest.raises(ValidationError, match="additional_params must be a base64 string"):
        WorkerConfig.model_validate({"additional_params": 12})


def test_unknown_key_in_additional_params_refused():
    with pytest.raises(ValidationError, match="additional_params has unknown keys \\['worker_gpu'\\]"):
        WorkerConfig.model_validate({"additional_params": pack({"worker_gpu": 1})})


def test_empty_additional_params_means_none():
    assert WorkerConfig.model_validate({"worker_size": "Small", "additional_params": ""}) == WorkerConfig(
        worker_size="Small"
    )


def test_values_inside_additional_params_are_validated():
    with pytest.raises(ValidationError, match="unsupported remote_url"):
        WorkerConfig.model_validate({"additional_params": pack({"git_configs": [{"remote_url": "ftp://x"}]})})
