"""DRF's JSON parser, hardened against input that makes Python's json module raise something
other than ValueError (which DRF turns into a 400)."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as e:
            # "[[[[...]]]]" a few thousand levels deep fits in any body-size limit and exhausts
            # the decoder's recursion, which DRF would let through as a 500.
            raise ParseError("JSON parse error - nested too deeply.") from e
