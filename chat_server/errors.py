"""Refusals that become an `error` frame or a 4xx answer; the connection lives on.

Refused            the request is understood and declined (code says why)
└── ProtocolError  the frame itself is malformed (chat_server.protocol)
"""

from __future__ import annotations

from typing import Any, Literal

ErrorCode = Literal[
    "bad_request",
    "too_large",
    "rate_limited",
    "not_found",
    "forbidden",
    "conflict",
    "closed",
    "unavailable",
]


class Refused(Exception):
    def __init__(self, code: ErrorCode, message: str, **context: Any) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        # Extra fields for the error frame, such as the client_id a failed send carried.
        self.context = context
