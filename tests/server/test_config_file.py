"""The server configuration: the TOML file, TASKYARD_* overrides, flags, and errors that name their key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taskyard.errors import ConfigError, InvalidInput, ServerUnavailable
from taskyard.server.config import ENV_OVERRIDES, GiB, Size, load_config, memory_text, parse_memory

from support import Server, write

SIZES = """
[sizes.Small]
cpu = 1
memory = "2GiB"

[sizes.Big]
cpu = 4.5
memory = 8589934592
gpu = 1
default = true
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No TASKYARD_CONFIG or override variable from the environment the tests run in."""
    for variable in (*ENV_OVERRIDES.values(), "TASKYARD_CONFIG"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in ``tmp_path``, so that a file given as ``taskyard.toml`` is named so in messages."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(folder: Path, text: str, **overrides):
    write(folder, "taskyard.toml", text)
    return load_config(Path("taskyard.toml"), data_dir=folder, **overrides)


def refusal(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load(folder, text)
    return refused.value.message


# -- what a config holds ----------------------------------------------------------------------------


def test_without_a_file_the_built_in_sizes_and_defaults(tmp_path):
    config = load_config(data_dir=tmp_path)
    assert list(config.sizes) == ["X-Small", "Small", "Medium", "Large", "X-Large"]
    shapes = [(size.cpu, size.memory // GiB, size.gpu) for size in config.sizes.values()]
    assert shapes == [(1, 1, 0), (1, 2, 0), (2, 4, 0), (4, 8, 0), (8, 16, 0)]
    assert config.default_size() == "X-Small"
    assert (config.sandbox, config.gpus, config.max_workers, config.warm_workers) == ("auto", None, None, None)
    assert config.db_url is None and config.backend == "local" and config.data_dir == tmp_path


def test_data_dir_defaults_to_taskyard_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKYARD_HOME", str(tmp_path / "home"))
    assert load_config().data_dir == tmp_path / "home"


def test_a_file_sets_every_key(in_tmp):
    text = 'db_url = "sqlite:///x.db"\nmax_workers = 3\nwarm_workers = 0\nsandbox = "off"\ngpus = ["0", 1]\n'
    config = load(in_tmp, text + SIZES)
    assert (config.db_url, config.max_workers, config.warm_workers) == ("sqlite:///x.db", 3, 0)
    assert (config.sandbox, config.gpus) == ("off", ("0", "1"))
    assert config.sizes == {
        "Small": Size(cpu=1, memory=2 * GiB),
        "Big": Size(cpu=4.5, memory=8 * GiB, gpu=1, default=True),
    }
    assert config.default_size() == "Big"


def test_sizes_of_a_file_replace_the_built_in_ones_and_the_first_is_default_without_x_small(in_tmp):
    config = load(in_tmp, '[sizes.one]\ncpu = 1\nmemory = "1GiB"\n[sizes.two]\ncpu = 2\nmemory = "2GiB"\n')
    assert list(config.sizes) == ["one", "two"] and config.default_size() == "one"


def test_x_small_is_the_default_when_none_is_marked(in_tmp):
    config = load(in_tmp, '[sizes.Tiny]\ncpu = 1\nmemory = "1GiB"\n[sizes.X-Small]\ncpu = 1\nmemory = "1GiB"\n')
    assert config.default_size() == "X-Small"


def test_sizes_are_found_in_any_letter_case_under_their_own_name(tmp_path):
    config = load_config(data_dir=tmp_path)
    assert config.size("x-LARGE") == ("X-Large", config.sizes["X-Large"])
    with pytest.raises(InvalidInput) as refused:
        config.size("Huge")
    assert refused.value.field == "worker_config.worker_size"
    assert refused.value.message == "unknown worker_size 'Huge'; valid sizes: X-Small, Small, Medium, Large, X-Large"


@pytest.mark.parametrize(
    ("given", "size"),
    [("2GiB", 2 * GiB), ("512MiB", 512 << 20), ("1.5GB", 1_500_000_000), ("2 gib", 2 * GiB), (1024, 1024)],
)
def test_memory_forms(given, size):
    assert parse_memory(given) == size


@pytest.mark.parametrize(("size", "text"), [(2 * GiB, "2 GiB"), (512 << 20, "512 MiB"), (int(23.5 * GiB), "23.5 GiB")])
def test_memory_text(size, text):
    assert memory_text(size) == text


# -- where a value comes from ------------------------------------------------------------------------


def test_variables_override_the_file_and_arguments_override_both(in_tmp, monkeypatch):
    text = 'max_workers = 2\nwarm_workers = 1\nsandbox = "off"\ndb_url = "sqlite:///file.db"\n'
    assert load(in_tmp, text).max_workers == 2
    monkeypatch.setenv("TASKYARD_MAX_WORKERS", "3")
    monkeypatch.setenv("TASKYARD_SANDBOX", "required")
    monkeypatch.setenv("TASKYARD_DB_URL", "sqlite:///env.db")
    config = load(in_tmp, text)
    assert (config.max_workers, config.sandbox, config.db_url, config.warm_workers) == (
        3,
        "required",
        "sqlite:///env.db",
        1,
    )
    monkeypatch.setenv("TASKYARD_WARM_WORKERS", "5")
    assert load(in_tmp, text).warm_workers == 5
    assert load(in_tmp, text, max_workers=4).max_workers == 4
    assert load(in_tmp, text, max_workers=None, db_url=None).max_workers == 3  # None: not given


def test_gpus_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKYARD_GPUS", "0, 1")
    assert load_config(data_dir=tmp_path).gpus == ("0", "1")
    monkeypatch.setenv("TASKYARD_GPUS", "")
    assert load_config(data_dir=tmp_path).gpus == ()  # none, rather than found on the host


def test_taskyard_config_names_the_file_and_a_given_path_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKYARD_CONFIG", str(write(tmp_path, "env.toml", "max_workers = 7\n")))
    assert load_config(data_dir=tmp_path).max_workers == 7
    assert load_config(write(tmp_path, "given.toml", "max_workers = 8\n"), data_dir=tmp_path).max_workers == 8


# -- every mistake names its key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[sizes.Small]\ncpu = 1\nmemory = "2 gigs"\n',
            'taskyard.toml: sizes.Small.memory: \'2 gigs\' is not a size; use e.g. "2GiB", "512MiB"',
        ),
        ("[sizes.Small]\ncpu = 0\nmemory = 1\n", "taskyard.toml: sizes.Small.cpu: Input should be greater than 0"),
        ("[sizes.Small]\ncpu = inf\nmemory = 1\n", "taskyard.toml: sizes.Small.cpu: Input should be a finite number"),
        ("[sizes.Small]\ncpu = 1\nmemory = 0\n", "taskyard.toml: sizes.Small.memory: Input should be greater than 0"),
        ("[sizes.Small]\ncpu = 1\nmemory = 1\ngpu = -1\n", "taskyard.toml: sizes.Small.gpu: Input should be greater"),
        ("[sizes.Small]\ncpu = 1\n", "taskyard.toml: sizes.Small.memory: Field required"),
        (
            "[sizes.Small]\ncpu = 1\nmemory = 1\ncpus = 2\n",
            "taskyard.toml: sizes.Small.cpus: unknown key; the keys are: cpu, memory, gpu, default",
        ),
        ('[sizes."a b"]\ncpu = 1\nmemory = 1\n', "taskyard.toml: sizes.a b: 'a b' is not a size name; use 1-32"),
        ("[sizes]\n", "taskyard.toml: sizes: name at least one size"),
        ("sizes = 3\n", "taskyard.toml: sizes: Input should be a valid dictionary"),
        (
            "[sizes.Small]\ncpu = 1\nmemory = 1\n[sizes.small]\ncpu = 2\nmemory = 2\n",
            "taskyard.toml: sizes: 'Small' and 'small' differ only by letter case",
        ),
        (
            "[sizes.A]\ncpu = 1\nmemory = 1\ndefault = true\n[sizes.B]\ncpu = 1\nmemory = 1\ndefault = true\n",
            "taskyard.toml: sizes: more than one size is marked default (sizes.A.default, sizes.B.default)",
        ),
        ("max_worker = 3\n", "taskyard.toml: max_worker: unknown key; the keys are: db_url, max_workers,"),
        ("[backends.ray]\naddress = 'x'\n", "taskyard.toml: backends.ray.type: give one of: local, ray, kubernetes"),
        ("[backends.a]\ntype = 'local'\nsandbox = 'maybe'\n", "taskyard.toml: backends.a.sandbox: Input should be"),
        ("[backends.a]\ntype = 'local'\nzones = 2\n", "taskyard.toml: backends.a.zones: unknown key; the keys"),
        ("[backends.a]\ntype = 'local'\ntimeout = 0\n", "taskyard.toml: backends.a.timeout: Input should be greater"),
        ("[backends.local]\ntype = 'kubernetes'\n", 'taskyard.toml: backends.local: the backend called "local"'),
        ("[pools.big]\nbackend = 'nowhere'\n", "taskyard.toml: pools.big.backend: no backend 'nowhere'"),
        ("[pools.big]\nmax_workers = -1\n", "taskyard.toml: pools.big.max_workers: Input should be greater"),
        ("[pools.big]\ncolour = 'red'\n", "taskyard.toml: pools.big.colour: unknown key; the keys are: backend"),
        ("[pools.default]\nmax_workers = 2\n", "taskyard.toml: pools.default: the default pool is set by"),
        ("advertise_url = 'ftp://x'\n", "taskyard.toml: advertise_url: 'ftp://x' is not an http(s) URL"),
        ("advertise_url = 'http://a:1,http://b'\n", "taskyard.toml: advertise_url: 'http://a:1,http://b': one URL,"),
        ("max_workers = 0\n", "taskyard.toml: max_workers: Input should be greater than or equal to 1 (got 0)"),
        ('warm_workers = "two"\n', "taskyard.toml: warm_workers: Input should be a valid integer"),
        ('sandbox = "on"\n', "taskyard.toml: sandbox: Input should be 'auto', 'required' or 'off' (got 'on')"),
        ('gpus = ["a b"]\n', "taskyard.toml: gpus: 'a b' is not a GPU id"),
    ],
)
def test_each_mistake_names_the_file_and_the_key(in_tmp, text, message):
    assert refusal(in_tmp, text).startswith(message)


def test_a_toml_syntax_error_names_the_file_and_the_line(in_tmp):
    message = refusal(in_tmp, 'max_workers = 2\nsandbox = "off\n')
    assert message.startswith("taskyard.toml: not valid TOML:") and "line 2" in message


def test_a_missing_file_is_named(in_tmp):
    with pytest.raises(ConfigError, match=r"^nowhere.toml: cannot read the configuration file: No such file"):
        load_config(Path("nowhere.toml"), data_dir=in_tmp)


def test_a_bad_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKYARD_MAX_WORKERS", "many")
    with pytest.raises(ConfigError, match=r"^TASKYARD_MAX_WORKERS: Input should be a valid integer.*\(got 'many'\)"):
        load_config(data_dir=tmp_path)


def test_taskyard_vault_key_is_checked_and_never_quoted(tmp_path, monkeypatch):
    key = "c2hvcnQ="  # base64, but of too few bytes to be a Fernet key
    monkeypatch.setenv("TASKYARD_VAULT_KEY", key)
    with pytest.raises(ConfigError, match=r"^TASKYARD_VAULT_KEY: not a vault key") as refused:
        load_config(data_dir=tmp_path)
    assert key not in str(refused.value)
    good = "bmV3LWtleS0zMi1ieXRlcy1sb25nLWZvci10ZXN0cyE="
    monkeypatch.setenv("TASKYARD_VAULT_KEY", f"{good}, {good}")
    config = load_config(data_dir=tmp_path)
    assert config.vault_key == f"{good}, {good}" and good not in repr(config)


def test_every_mistake_is_reported_at_once(in_tmp):
    message = refusal(in_tmp, 'max_workers = 0\nsandbox = "on"\n')
    assert "max_workers:" in message and "sandbox:" in message


# -- a server that is given a bad file ----------------------------------------------------------------

BAD = '[sizes.Small]\ncpu = 1\nmemory = "2 gigs"\n'
BAD_MESSAGE = 'sizes.Small.memory: \'2 gigs\' is not a size; use e.g. "2GiB", "512MiB"'


def test_taskyard_server_with_a_bad_config_exits_2_with_the_message(in_tmp):
    write(in_tmp, "bad.toml", BAD)
    command = [sys.executable, "-m", "taskyard", "server", "--config", "bad.toml", "--home", "home", "--port", "0"]
    result = subprocess.run(command, cwd=in_tmp, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: bad.toml: {BAD_MESSAGE}\n"
    assert result.stdout == ""


def test_an_embedded_server_with_a_bad_config_says_why_and_logs_it(tmp_path):
    bad = write(tmp_path, "bad.toml", BAD)
    with pytest.raises(ServerUnavailable) as refused:
        Server(tmp_path / "home", TASKYARD_CONFIG=str(bad)).start()
    assert f"failed to start: {bad}: {BAD_MESSAGE}; see {tmp_path / 'home' / 'server.log'}" in refused.value.message
    assert f"error: {bad}: {BAD_MESSAGE}" in (tmp_path / "home" / "server.log").read_text()


def test_the_readme_example_is_a_valid_config(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [example] = [block.split("```", 1)[0] for block in readme.split("```toml\n")[1:] if "[sizes." in block]
    config = load_config(write(tmp_path, "taskyard.toml", example), data_dir=tmp_path)
    assert list(config.sizes) == ["Small", "GPU-Large"] and config.default_size() == "Small"
    assert config.sizes["GPU-Large"] == Size(cpu=8, memory=32 * GiB, gpu=1)


def test_the_readme_backends_example_is_a_valid_config(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in readme.split("```toml\n")[1:]]
    [example] = [block for block in blocks if "[backends.unsandboxed]" in block]
    config = load_config(write(tmp_path, "taskyard.toml", example), data_dir=tmp_path)
    assert list(config.backends) == ["local", "unsandboxed"] and config.backends["unsandboxed"].timeout == 30
    assert config.pools["trusted"].spec("trusted").backend == "unsandboxed"
    assert config.pools["trusted"].time_to_live == 8 * 3600
