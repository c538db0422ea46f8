"""The static checks CI runs beside the tests: strict types, lint and formatting.

Each runs as its own process from the repository root, with the project's configuration.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPED = ("chat_server", "db", "counsellor_console", "web_client", "bench", "tests")
# A cold mypy run takes well under this; a hang should fail, not stall CI.
TIMEOUT_S = 300


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("mypy", *TYPED), id="mypy"),
        pytest.param(("ruff", "check", "."), id="ruff-check"),
        pytest.param(("ruff", "format", "--check", "."), id="ruff-format"),
    ],
)
def test_the_code_passes_the_static_check(command: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}",
            pytrace=False,
        )
