"""The Express API's success envelope, built in one place: {"success": true, "data": ...}.

Errors have theirs in connectors/api/exceptions.py.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from connectors.cache import CachedRead


def success(data: Any, *, status_code: int = status.HTTP_200_OK) -> Response:
    return Response({"success": True, "data": data}, status=status_code)


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


def cached_read(request: Request, result: CachedRead) -> HttpResponse:
    """A read-through result with `cached` (and `stale`), its ETag, and 304 on If-None-Match.

    The envelope is spliced around the document's bytes: on a hit nothing is decoded or
    re-encoded.
    """
    headers = {"ETag": result.etag, "Cache-Control": "private, no-cache"}
    if _etag_matches(request, result.etag):
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    body = b'{"success":true,"data":%s,"cached":%s%s}' % (
        result.body,
        b"true" if result.cached else b"false",
        b',"stale":true' if result.stale else b"",
    )
    return HttpResponse(body, content_type="application/json", headers=headers)
