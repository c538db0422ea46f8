"""Static assets with content-hashed URLs: cached for a year, revalidated by ETag otherwise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class Assets(StaticFiles):
    def __init__(self, directory: Path, prefix: str) -> None:
        super().__init__(directory=directory, follow_symlink=False)
        self.prefix = prefix.rstrip("/")
        self._root = directory
        self._versions: dict[str, str] = {}

    def url(self, path: str) -> str:
        """The URL of a file under the directory, versioned by a hash of its content."""
        version = self._versions.get(path)
        if version is None:
            # Hashed once per process: files are deployed, not edited in place.
            version = hashlib.sha256((self._root / path).read_bytes()).hexdigest()[:12]
            self._versions[path] = version
        return f"{self.prefix}/{path}?v={version}"

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        versioned = b"v=" in scope.get("query_string", b"")
        response.headers["Cache-Control"] = IMMUTABLE if versioned else REVALIDATE
        return response


def load_strings(directory: Path, lang: str) -> dict[str, Any]:
    strings: dict[str, Any] = json.loads((directory / f"{lang}.json").read_text(encoding="utf-8"))
    return strings


def strings_json(strings: dict[str, Any]) -> Markup:
    """The strings as JSON that is safe inside a <script type="application/json"> block."""
    text = json.dumps(strings, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
