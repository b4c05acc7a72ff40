"""Business events the service counts for its metrics (``lephi.metrics``), reported by the domain packages.

The domain calls ``observer().…``; the service installs an observer that counts when ``LEPHI_METRICS`` is on.
Until then every call does nothing, so a package used alone, or with metrics off, pays one attribute lookup.
Nothing here imports a metrics library: the packages below the service stay free of it.

An event that belongs to a database change is reported with ``after_commit``, so a transaction that is rolled back
(a lost race, a failed commit) counts nothing."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

_PENDING = "lephi_observe_pending"


class Observer(Protocol):
    @property
    def enabled(self) -> bool: ...
    def payment_created(self, method: str) -> None: ...
    def payment_status(self, method: str, status: str) -> None:
        """A payment moved to ``status`` (created, pending, succeeded, ...)."""

    def callback(self, gateway: str, outcome: str) -> None:
        """A gateway's server-to-server message was answered with this outcome (accepted, duplicate, ...)."""

    def receipt_issued(self, purpose: str) -> None:
        """A signed document was issued: original, adjustment or replacement."""

    def webhook_failed(self, reason: str, final: bool) -> None:
        """One delivery attempt to a client's endpoint failed; ``final`` when no retry follows."""


class _Nothing:
    enabled = False

    def payment_created(self, method: str) -> None:
        pass

    def payment_status(self, method: str, status: str) -> None:
        pass

    def callback(self, gateway: str, outcome: str) -> None:
        pass

    def receipt_issued(self, purpose: str) -> None:
        pass

    def webhook_failed(self, reason: str, final: bool) -> None:
        pass


NOTHING: Observer = _Nothing()
_current: Observer = NOTHING


def observer() -> Observer:
    return _current


def install(new: Observer) -> Observer:
    """Make ``new`` the process's observer; returns the previous one (tests put it back)."""
    global _current
    previous, _current = _current, new
    return previous


def after_commit(s: Session, report: Callable[[], None]) -> None:
    """Report once ``s``'s transaction has committed; nothing is kept when no observer counts."""
    if _current.enabled:
        s.info.setdefault(_PENDING, []).append(report)


@event.listens_for(Session, "after_commit")
def _run_pending(session: Session) -> None:
    if not _current.enabled:
        return
    for report in session.info.pop(_PENDING, ()):
        # The change is committed: a count must never fail the request that made it.
        with suppress(Exception):
            report()


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    if _current.enabled:
        session.info.pop(_PENDING, None)
