"""config: the config file's profiles, key files and their permissions, and which source wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_pipeline.config.connection import MissingKey, resolve_connection
from kling_pipeline.config.profiles import ConfigError, Profile, config_path, load_config

KEY = "inf_config_test_key_0123456789"


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return {"KLING_PIPELINE_CONFIG": str(path), "HOME": str(tmp_path)}


def key_file(path: Path, text: str = KEY + "\n", mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_the_config_file_is_found_by_xdg_then_home() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/kling-pipeline/config.yaml")
    assert config_path({"HOME": "/home/me"}) == Path("/home/me/.config/kling-pipeline/config.yaml")
    assert config_path({"KLING_PIPELINE_CONFIG": "/etc/kp.yaml", "XDG_CONFIG_HOME": "/x"}) == Path("/etc/kp.yaml")


def test_no_config_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_config({"HOME": str(tmp_path)})
    assert (config.exists, dict(config.profiles), config.default) == (False, {}, None)


def test_profiles_are_read_with_paths_relative_to_the_config_file(tmp_path: Path) -> None:
    env = write_config(tmp_path, "version: 1\ndefault: work\nprofiles:\n  work:\n    key_file: keys/work.key\n"
                                 "    concurrency: 4\n    rate: 1.5\n  staging:\n    base_url: http://127.0.0.1:8765\n"
                                 "    key_env: STAGING_KEY\n")
    config = load_config(env)
    work = config.profiles["work"]
    assert (config.default, work.key_file, work.concurrency, work.rate) == ("work", tmp_path / "keys/work.key", 4, 1.5)
    assert config.profiles["staging"] == Profile("staging", "http://127.0.0.1:8765", None, "STAGING_KEY", None, None,
                                                 config.profiles["staging"].pos)


def test_every_problem_of_the_config_file_is_reported_at_its_place(tmp_path: Path) -> None:
    env = write_config(tmp_path, "default: nope\nprofiles:\n  work:\n    key: inf_secret\n    base_url: ftp://x\n"
                                 "    concurency: 2\n    rate: -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(env)
    where = tmp_path / "config.yaml"
    assert str(info.value).splitlines() == [
        f"{where}:4:5: profiles.work.key: the key itself does not go in the config file; put it in a file of its "
        "own (key_file, chmod 600) or in an environment variable (key_env)",
        f"{where}:6:5: unknown key 'concurency' in profiles.work; did you mean 'concurrency'? (allowed: base_url, "
        "key_file, key_env, concurrency, rate, key)",
        f"{where}:7:11: profiles.work.rate must be a number of submits per second > 0, got -1",
        f"{where}:5:15: profiles.work.base_url must be an http:// or https:// URL, got 'ftp://x'",
        f"{where}:1:10: default: no profile 'nope' (profiles: work)",
    ]
    assert "inf_secret" not in str(info.value)


def test_a_key_file_others_can_read_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = key_file(tmp_path / "k", mode=0o644)
    with pytest.raises(ConfigError) as info:
        resolve_connection({"HOME": str(tmp_path), "INFERENCE_API_KEY_FILE": str(path)})
    assert str(info.value) == (f"$INFERENCE_API_KEY_FILE: {path}: permissions 0644 let the group and others at the "
                               f"key; refused. Run: chmod 600 {path}")
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="permissions 0640 let the group at the key"):
        resolve_connection({"HOME": str(tmp_path), "INFERENCE_API_KEY_FILE": str(path)})


@pytest.mark.parametrize(("text", "problem"), [
    ("", "the file is empty"),
    ("inf_a inf_b\n", "holds more than one word; it should hold the API key alone"),
])
def test_a_key_file_holds_one_key(tmp_path: Path, text: str, problem: str) -> None:
    path = key_file(tmp_path / "k", text)
    with pytest.raises(ConfigError) as info:
        resolve_connection({"HOME": str(tmp_path), "INFERENCE_API_KEY_FILE": str(path)})
    assert str(info.value) == f"$INFERENCE_API_KEY_FILE: {path}: {problem}"


def test_a_private_key_file_gives_the_key_and_says_where_from(tmp_path: Path) -> None:
    path = key_file(tmp_path / "k")
    conn = resolve_connection({"HOME": str(tmp_path), "INFERENCE_API_KEY_FILE": str(path)})
    assert (conn.key.reveal(), conn.key_from) == (KEY, f"{path} ($INFERENCE_API_KEY_FILE)")
    assert (conn.base_url, conn.base_url_from) == ("https://api.inference.sh", "the default")
    assert KEY not in repr(conn)


def test_the_command_line_then_the_environment_then_the_config_file(tmp_path: Path) -> None:
    key_file(tmp_path / "work.key", "inf_from_profile\n")
    env = write_config(tmp_path, "default: work\nprofiles:\n  work:\n    key_file: work.key\n"
                                 "    base_url: https://work.example\n")
    env |= {"INFERENCE_API_KEY": "inf_from_env", "INFERENCE_BASE_URL": "https://env.example"}
    implicit = resolve_connection(env)  # the default profile loses to the environment
    assert (implicit.key.reveal(), implicit.base_url) == ("inf_from_env", "https://env.example")
    named = resolve_connection(env, profile="work")  # a profile named on the command line wins over it
    assert (named.key.reveal(), named.key_from, named.base_url) == (
        "inf_from_profile", f"{tmp_path / 'work.key'} (profile work)", "https://work.example")
    flag = resolve_connection(env, profile="work", base_url="http://127.0.0.1:1")
    assert flag.base_url == "http://127.0.0.1:1"
    del env["INFERENCE_API_KEY"], env["INFERENCE_BASE_URL"]
    fallback = resolve_connection(env)  # nothing in the environment: the default profile
    assert (fallback.key.reveal(), fallback.base_url_from) == ("inf_from_profile", "profile work")


def test_an_unknown_profile_and_a_missing_key_say_what_to_do(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    with pytest.raises(ConfigError) as info:
        resolve_connection(env, profile="prod")
    assert str(info.value) == (f"--profile: no profile 'prod' in {tmp_path}/.config/kling-pipeline/config.yaml "
                               "(there is no such file); profiles: none")
    with pytest.raises(MissingKey) as missing:
        resolve_connection(env)
    assert str(missing.value) == ("no API key: export INFERENCE_API_KEY (or INFERENCE_API_KEY_FILE, a file only you "
                                  "can read), or give a profile a key_file (see docs/config.md)")
    env |= write_config(tmp_path, "profiles:\n  ci:\n    key_env: CI_KEY\n")
    with pytest.raises(ConfigError) as unset:
        resolve_connection(env, profile="ci")
    assert str(unset.value) == f"{tmp_path / 'config.yaml'}:2:3: profile 'ci': $CI_KEY (its key_env) is not set"
    assert resolve_connection({**env, "CI_KEY": " inf_ci \n"}, profile="ci").key.reveal() == "inf_ci"
