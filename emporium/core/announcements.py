"""Telling apps higher up that something happened, without importing them.

Imports flow one way (docs/architecture.md, "Import direction"): an app may
not call the apps that sit above it. Where a lower app must still let a
higher one react (accounts telling realtime that a user's access ended,
delivery telling the dashboard that points were stored), it owns an
:class:`Announcement`; the higher app adds a listener from its
``AppConfig.ready()``, and the lower app announces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class Announcement(Generic[Value]):
    """Listeners called in order with each announced value."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Value], None]] = []

    def listen(self, listener: Callable[[Value], None]) -> None:
        """Adds ``listener(value)``; adding the same one twice keeps one."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def announce(self, value: Value) -> None:
        for listener in tuple(self._listeners):
            listener(value)
