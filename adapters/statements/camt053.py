"""ISO 20022 camt.053 bank-to-customer statements (``camt.053.001.02`` and ``.08``; other versions of the same
shape work too), read entry by entry.

Elements are found by local name, so the version's namespace does not matter. Only ``Ntry`` elements are built into
trees, one at a time, and each is emptied and dropped once read: memory stays flat however long the file is.

The parser is hardened: no entity is resolved, nothing is fetched from the network, no DTD is loaded, and a document
with a DOCTYPE is refused outright (camt.053 never needs one; a DOCTYPE is how entity attacks arrive).

Mapping of one ``Ntry``:

- ``amount``: ``Amt`` (``Ccy`` must be VND), positive for ``CdtDbtInd`` ``CRDT``, negative for ``DBIT``; ``kind``
  ``credit`` or ``debit``. A reversal (``RvslInd``) is signed by its own ``CdtDbtInd``, like any entry.
- ``booked_on``: ``BookgDt`` (``Dt``, or ``DtTm`` converted to GMT+7), else ``ValDt``; ``value_on``: ``ValDt``.
- ``external_id``: the first present of ``AcctSvcrRef`` (the bank's reference for the entry, else the one in
  ``TxDtls/Refs``), ``NtryRef``, ``TxDtls/Refs/TxId``, ``TxDtls/Refs/EndToEndId`` (unless ``NOTPROVIDED``; last,
  because the payer sets it and a return of the payment repeats it); else ``{Stmt/Id}/{n}``, n being the entry's
  position in its statement.
- ``reference``: the ``RmtInf/Ustrd`` texts of the entry joined as they are (a memo longer than 140 characters is
  split over several); else ``RmtInf/Strd/CdtrRefInf/Ref``.
- ``counterparty``: the name of ``RltdPties/Dbtr`` for a credit, of ``RltdPties/Cdtr`` for a debit (``Nm``, or
  ``Pty/Nm`` from version .08 on).
- ``description``: ``AddtlNtryInf``, else ``TxDtls/AddtlTxInf``.

Entries whose status (``Sts``, or ``Sts/Cd`` from .08 on) is not ``BOOK`` (pending or information only) are left
out: they are not money on the account yet. A batch entry (several ``TxDtls``) is one line: the bank booked one
amount.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import IO, Any

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from adapters.statements.base import (
    LineKind,
    Source,
    StatementError,
    StatementLine,
    check_currency,
    is_blank,
    local_date,
    open_source,
    parse_amount,
)

_WATCHED = ("{*}Ntry", "{*}Stmt")
# What the one walk over an entry's elements does with each local name; anything else is skipped. A container says
# where the next inner element (Dt, Nm, Ref, Cd) belongs; every other listed element ends it. The first of each field
# in document order is the entry's own, since entry-level elements come before NtryDtls.
_FIELD, _CONTAINER, _REMITTANCE, _INNER, _BARRIER = range(1, 6)
_ROLES = {
    **dict.fromkeys(("Amt", "CdtDbtInd", "AcctSvcrRef", "NtryRef", "AddtlNtryInf"), _FIELD),
    **dict.fromkeys(("EndToEndId", "TxId", "AddtlTxInf"), _FIELD),
    **dict.fromkeys(("BookgDt", "ValDt", "Dbtr", "Cdtr", "CdtrRefInf", "Sts"), _CONTAINER),
    **dict.fromkeys(("Dt", "DtTm", "Nm", "Ref", "Cd"), _INNER),
    **dict.fromkeys(("DbtrAcct", "CdtrAcct", "UltmtDbtr", "UltmtCdtr", "Avlbty", "BkTxCd", "NtryDtls"), _BARRIER),
    "Ustrd": _REMITTANCE,
}
_INNER_KEYS = {
    **{(c, i): f"{c}/{i}" for c in ("BookgDt", "ValDt") for i in ("Dt", "DtTm")},
    ("Dbtr", "Nm"): "Dbtr/Nm",
    ("Cdtr", "Nm"): "Cdtr/Nm",
    ("CdtrRefInf", "Ref"): "CdtrRefInf/Ref",
    ("Sts", "Cd"): "Sts",  # the status is Sts's text up to version .07, its Cd child from .08 on
}
# Full tag ("{urn:...}Amt") -> (role, local name): one dict lookup per element instead of slicing every tag of
# every entry. A file has a few dozen distinct tags.
_TAG_ROLES: dict[str, tuple[int, str]] = {}
_TAG_ROLES_MAX = 1000
_SIGN = {"CRDT": 1, "DBIT": -1}
_Element = Any  # lxml's element type; lxml ships no stubs here


_HARDENED = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def parse_camt053(source: Source) -> Iterator[StatementLine]:
    """The booked entries of a camt.053 file, in file order."""
    with open_source(source) as fh:
        if is_blank(fh):
            return
        try:
            _refuse_doctype_first(fh)
            yield from _entries(etree.iterparse(fh, events=("end",), tag=_WATCHED, **_HARDENED))
        except etree.XMLSyntaxError as exc:
            raise StatementError(f"not well-formed XML: {exc.msg}", exc.lineno) from None


def _refuse_doctype_first(fh: IO[bytes]) -> None:
    """Look at the prolog before reading the body: parse up to the root's start tag only, then rewind. A source
    that cannot rewind is checked at its first entry instead (nothing is resolved or fetched either way)."""
    if not fh.seekable():
        return
    start = fh.tell()
    for _, root in etree.iterparse(fh, events=("start",), **_HARDENED):
        _refuse_doctype(root)
        break
    fh.seek(start)


def _entries(events: Any) -> Iterator[StatementLine]:
    checked = False
    statement: _Element = None
    statement_id, index = "", 0
    for _, elem in events:
        if not checked:
            _refuse_doctype(elem)
            checked = True
        parent = elem.getparent()
        if _local(elem.tag) == "Stmt":
            _drop(elem, parent)
            continue
        if parent is not statement:  # the first entry of a statement
            _check_statement(elem, parent)
            statement, statement_id, index = parent, (parent.findtext("{*}Id") or "").strip(), 0
        index += 1
        line = _entry(elem, statement_id, index)
        _drop(elem, parent)
        if line is not None:
            yield line
    root = events.root
    if not checked:
        _refuse_doctype(root)
    if _local(root.tag) != "BkToCstmrStmt" and root.find("{*}BkToCstmrStmt") is None:
        raise StatementError("not a camt.053 statement: no BkToCstmrStmt element", 1)


def _check_statement(ntry: _Element, parent: _Element) -> None:
    grandparent = None if parent is None else parent.getparent()
    if _local(parent.tag) != "Stmt" or grandparent is None or _local(grandparent.tag) != "BkToCstmrStmt":
        raise StatementError("not a camt.053 statement: Ntry outside BkToCstmrStmt/Stmt", ntry.sourceline)


def _refuse_doctype(elem: _Element) -> None:
    if elem is not None and elem.getroottree().docinfo.doctype:
        raise StatementError("a DOCTYPE is not accepted in a camt.053 file (it could declare entities)")


def _drop(elem: _Element, parent: _Element) -> None:
    """Free what has been read: the element's content now, the (empty) previous sibling of the same kind."""
    elem.clear(keep_tail=False)
    if parent is not None:
        previous = elem.getprevious()
        if previous is not None and previous.tag == elem.tag:
            parent.remove(previous)


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


def _role(tag: str) -> tuple[int, str]:
    local = _local(tag)
    role = (_ROLES.get(local, 0), local)
    if len(_TAG_ROLES) < _TAG_ROLES_MAX:  # a hostile file could make up endless tags
        _TAG_ROLES[tag] = role
    return role


def _entry(ntry: _Element, statement_id: str, index: int) -> StatementLine | None:
    n = ntry.sourceline
    found, remittance, amount_el = _walk(ntry)
    if found.get("Sts", "BOOK") not in ("BOOK", ""):
        return None
    if amount_el is None:
        raise StatementError("the entry has no Amt", n)
    indicator = found.get("CdtDbtInd", "")
    if indicator not in _SIGN:
        raise StatementError(f"CdtDbtInd {indicator!r} is neither CRDT nor DBIT", n)
    currency = check_currency(amount_el.get("Ccy") or "", n)
    amount = _SIGN[indicator] * parse_amount(_text(amount_el), n, "Amt")
    value_on = _date(found, "ValDt", n)
    booked_on = _date(found, "BookgDt", n) or value_on
    if booked_on is None:
        raise StatementError("the entry has neither BookgDt nor ValDt", n)
    end_to_end = found.get("EndToEndId", "")
    ids = (found.get("AcctSvcrRef"), found.get("NtryRef"), found.get("TxId"))
    external_id = next((i for i in ids if i), "") or ("" if end_to_end == "NOTPROVIDED" else end_to_end)
    return StatementLine(
        source_line=n,
        external_id=external_id or f"{statement_id}/{index}",
        kind=LineKind.credit if indicator == "CRDT" else LineKind.debit,
        amount=amount,
        currency=currency,
        booked_on=booked_on,
        value_on=value_on,
        reference="".join(remittance).strip() or found.get("CdtrRefInf/Ref", ""),
        counterparty=found.get("Dbtr/Nm" if indicator == "CRDT" else "Cdtr/Nm") or None,
        description=found.get("AddtlNtryInf") or found.get("AddtlTxInf", ""),
    )


def _walk(ntry: _Element) -> tuple[dict[str, str], list[str], _Element | None]:
    """One pass over the entry: (first text of each field, inner ones keyed "Container/Inner"; the remittance
    texts in order; the Amt element, whose Ccy attribute is needed)."""
    found: dict[str, str] = {}
    remittance: list[str] = []
    amount_el = None
    container = ""
    for elem in ntry.iter():
        role, name = _TAG_ROLES.get(elem.tag) or _role(elem.tag)
        # .text decodes a new string on every read, so only the elements a field comes from are read.
        if not role:
            continue
        if role == _FIELD:
            container = ""
            if name not in found:
                found[name] = _text(elem)
                amount_el = elem if name == "Amt" else amount_el
        elif role == _CONTAINER:
            container = name
            if name == "Sts":
                found.setdefault(name, _text(elem))
        elif role == _INNER:
            key = _INNER_KEYS.get((container, name))
            if key is not None and not found.get(key):
                found[key] = _text(elem)
        else:
            container = ""
            if role == _REMITTANCE:
                remittance.append(elem.text or "")
    return found, remittance, amount_el


def _text(elem: _Element | None) -> str:
    return "" if elem is None or elem.text is None else str(elem.text).strip()


def _date(found: dict[str, str], container: str, n: int) -> date | None:
    """The day of BookgDt or ValDt (``Dt``, or ``DtTm`` in GMT+7); None when the entry has no such date."""
    day, moment = found.get(f"{container}/Dt"), found.get(f"{container}/DtTm")
    try:
        if day is not None:
            return date.fromisoformat(day)
        if moment is not None:
            return local_date(datetime.fromisoformat(moment))
    except (ValueError, OverflowError):  # OverflowError: a valid time that has no GMT+7 day (year 1 or 9999)
        raise StatementError(f"{container} {day or moment!r} is not an ISO date", n) from None
    return None
