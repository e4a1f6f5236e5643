"""Bad or out-of-range ``EHRCA_*`` settings at start-up (``api.cli.main``): one clean
``ehrca: ...`` line on stderr, exit 1, no traceback, and nothing created (no database,
no key files) — in process for each setting, and once as the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import main

EHRCA = Path(sys.executable).parent / "ehrca"
COMMAND_TIMEOUT = 60.0  # seconds (a bound, not an expectation)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No inherited ``EHRCA_*``; var and keys under ``tmp_path/data``."""
    for name in list(os.environ):
        if name.startswith("EHRCA_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("EHRCA_VAR_DIR", str(data / "var"))
    monkeypatch.setenv("EHRCA_KEYS_DIR", str(data / "keys"))
    monkeypatch.setenv("EHRCA_KEY_PASSPHRASE", "cli-settings-test")
    return data


@pytest.mark.parametrize(
    ("command", "variable", "value", "message"),
    [
        (
            "init",
            "EHRCA_CLIENT_VALIDITY_DAYS",
            "5000",
            "invalid setting EHRCA_CLIENT_VALIDITY_DAYS: Input should be less than or equal "
            "to 3650",
        ),
        (
            "init",
            "EHRCA_CLIENT_VALIDITY_DAYS",
            "two years",
            "invalid setting EHRCA_CLIENT_VALIDITY_DAYS: Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            "init",
            "EHRCA_ISSUING_VALIDITY_DAYS",
            "36500",
            "profile issuing_ca: validity 36500 days is above the issuer profile "
            "'root_ca''s 7300 days",
        ),
        (
            "serve",
            "EHRCA_ROOT_VALIDITY_DAYS",
            "100",
            "profile issuing_ca: validity 3650 days is above the issuer profile "
            "'root_ca''s 100 days",
        ),
        (
            "init",
            "EHRCA_CRL_REFRESH_SECONDS",
            "99999999999999999999",
            "invalid setting EHRCA_CRL_REFRESH_SECONDS: Input should be less than or equal "
            "to 2592000",
        ),
        (
            "tasks",
            "EHRCA_TOKEN_LIFETIME_SECONDS",
            "99999999999999999999",
            "invalid setting EHRCA_TOKEN_LIFETIME_SECONDS: Input should be less than or "
            "equal to 2592000",
        ),
        (
            "serve",
            "EHRCA_CRL_SHARDS",
            "0",
            "invalid setting EHRCA_CRL_SHARDS: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_1(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    argv = [command, "run"] if command == "tasks" else [command]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err == f"ehrca: {message}\n"
    assert not clean_env.exists()  # checked before any file or database is made


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRCA_")}
    env.update(
        EHRCA_VAR_DIR=str(tmp_path / "var"),
        EHRCA_KEYS_DIR=str(tmp_path / "keys"),
        EHRCA_SERVER_VALIDITY_DAYS="3651",
    )
    result = subprocess.run(
        [str(EHRCA), "init"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "ehrca: invalid setting EHRCA_SERVER_VALIDITY_DAYS: Input should be less than or "
        "equal to 3650\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
