"""Announcing that a user's access ended, to whoever holds sessions open for them.

Accounts sit below the apps that keep connections open (realtime's
WebSockets), so they cannot call those apps. Instead each such app registers
a listener here from its ``AppConfig.ready()``; accounts announce a
deactivation, a deletion or a revoked token family through
:func:`user_access_revoked`, and every listener closes what it holds.
"""

from __future__ import annotations

from collections.abc import Callable

from emporium.core.announcements import Announcement

RevocationListener = Callable[[int], None]
_revoked: Announcement[int] = Announcement()


def revocation_listener_register(listener: RevocationListener) -> None:
    """Registers ``listener(user_id)``; registering the same one twice keeps one."""
    _revoked.listen(listener)


def user_access_revoked(*, user_id: int) -> None:
    """Tells every listener that ``user_id``'s sessions must end (each decides when: realtime
    closes the user's sockets once the current transaction commits)."""
    _revoked.announce(user_id)
