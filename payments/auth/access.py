"""Isolation between agencies: the one place that decides whether a client may see an object, and logs when not.

Ids are global, so a key of agency B can name agency A's object. The answer must not tell B that the object
exists (it is exactly the answer for a missing one), while the operators must hear of the attempt."""

from __future__ import annotations

from typing import Protocol, TypeVar

from payments.core.errors import NotFound
from payments.core.logging import get_logger

log = get_logger(__name__)

CROSS_AGENCY_ACCESS = "auth.cross_agency_access"


class Owned(Protocol):
    @property
    def agency_id(self) -> str: ...


T = TypeVar("T", bound=Owned)


def is_foreign(obj: Owned | None, agency_id: str, ident: str) -> bool:
    """True when ``obj`` belongs to another agency than the caller's; each such attempt is logged once, naming the
    caller's agency and the identifier it used (never the owner's data)."""
    if obj is None or obj.agency_id == agency_id:
        return False
    resource = getattr(obj, "__tablename__", type(obj).__name__.lower())
    log.warning(CROSS_AGENCY_ACCESS, resource=resource, resource_id=ident, agency_id=agency_id)
    return True


def owned_or_404(obj: T | None, agency_id: str, what: str, ident: str) -> T:
    """``obj`` if it is the caller's agency's; otherwise 404 ``no <what> '<ident>'``, the same for a missing object
    and for another agency's one."""
    if obj is None or is_foreign(obj, agency_id, ident):
        raise NotFound(f"no {what} {ident!r}")
    return obj
