"""Publication events: who must forget what they kept once a publication is committed.

:func:`server.services.delivery.outbox.publish` marks its session; when that session's transaction
commits, every subscriber is called (in this process, synchronously, before the commit returns
to its caller), so a cache emptied here never serves what the publication changed to a request
that starts after it (decision 48). A rolled-back transaction calls no one.

Subscribers are held weakly: an application's page cache goes away with the application.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_PUBLISHED = "entraide_published"
_subscribers: list[weakref.WeakMethod[Callable[[], None]]] = []


def subscribe(method: Callable[[], None]) -> None:
    """Call ``method`` (a bound method, held weakly) after each committed publication."""
    _subscribers.append(weakref.WeakMethod(method))


def mark_published(session: AsyncSession | Session) -> None:
    """This transaction publishes: notify the subscribers when (and only if) it commits."""
    session.info[_PUBLISHED] = True


def notify() -> None:
    alive = []
    for ref in _subscribers:
        method = ref()
        if method is None:
            continue
        alive.append(ref)
        try:
            method()
        except Exception:  # a subscriber's failure must not fail the committed publication
            log.exception("publication subscriber failed")
    _subscribers[:] = alive


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_PUBLISHED, False):
        notify()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PUBLISHED, None)
