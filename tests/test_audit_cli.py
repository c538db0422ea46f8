"""`alo116 audit` on the command line reads the log, filtered, and is itself recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, server_process


def test_the_audit_command_lists_filtered_events_and_records_its_own_reading(
    tmp_path: Path, sqlite_template: Path
) -> None:
    db = tmp_path / "audit.db"
    db.write_bytes(sqlite_template.read_bytes())
    server = server_process(f"sqlite+aiosqlite:///{db}")
    server.create_user("drita", "supervisor", "Drita")

    def audit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chat_server.cli", "audit", *args],
            env=server.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    created = audit("--action", "user.create")
    assert created.returncode == 0, created.stderr
    assert "user.create" in created.stdout and "audit.view" not in created.stdout
    seen = audit("--action", "audit.view")
    assert "audit.view" in seen.stdout and "via=cli" in seen.stdout
    assert audit("--action", "nothing.like.this").stdout.strip() == "no audit events match"
    wrong = audit("--since", "yesterday-ish")
    assert wrong.returncode == 2 and "alo116:" in wrong.stderr
