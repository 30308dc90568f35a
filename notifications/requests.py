"""What both HTTP endpoints (Slack interactions, incident intake) do alike with a request:
read a body no bigger than a limit, and answer a refusal as JSON."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The raw body, or None past `limit` bytes (checked before reading, and while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def refusal(
    status: int,
    message: str,
    problems: list[str] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """`{"ok": false, "error": ..., "problems": [...]}` with the status: the caller's mistake
    (or our unavailability) named, never a traceback."""
    body: dict[str, Any] = {"ok": False, "error": message}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, headers=headers)
