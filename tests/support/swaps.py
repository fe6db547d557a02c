"""Module attributes replaced for the whole process, and put back: how the naive modes
(tests/support/naive.py, naive_ha.py) turn today's code into the behaviour it is compared with."""

from __future__ import annotations

from typing import Any


class Swaps:
    def __init__(self, swaps: list[tuple[Any, str, Any]]) -> None:
        self._swaps = swaps
        self._originals = {
            (module.__name__, name): getattr(module, name) for module, name, _ in swaps
        }

    def install(self) -> None:
        for module, name, replacement in self._swaps:
            setattr(module, name, replacement)

    def uninstall(self) -> None:
        for module, name, _ in self._swaps:
            setattr(module, name, self._originals[(module.__name__, name)])
