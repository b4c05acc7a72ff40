"""The figures of the period report and of the province's monthly statistics, read in one transaction.

The conventions are those of the daily close (``payments.reconcile.reports``): days are Vietnam days, a payment
counts on the day it succeeded, a refund on the day it completed (whatever day its payment was made), a gateway fee
on the day its statement line was booked. Rows are summed in Python rather than grouped in SQL: grouping by a Vietnam
day needs a different expression on SQLite and PostgreSQL, and a period is bounded (``MAX_DAYS``)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import func, select, text
from sqlmodel import Session, col

from payments.agency.models import Agency, Procedure
from payments.dossier.models import Dossier
from payments.pages.fmt import VIETNAM
from payments.payment.models import Payment, Refund, RefundStatus
from payments.payment.states import PAID
from payments.reconcile.models import ExceptionStatus, ReconException, StatementEntry

MAX_DAYS = 366
TREND_DAYS = 30
K = TypeVar("K")


class Grain(StrEnum):
    day = "day"
    month = "month"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), VIETNAM).astimezone(UTC)


def vietnam_day(moment: datetime) -> date:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(VIETNAM).date()


def today() -> date:
    return datetime.now(VIETNAM).date()


def month_bounds(month: date) -> tuple[date, date]:
    """The first and the last day of ``month``'s month."""
    first = month.replace(day=1)
    after = (first + timedelta(days=32)).replace(day=1)
    return first, after - timedelta(days=1)


def repeatable(s: Session) -> None:
    """Every figure of one page from one snapshot: on PostgreSQL a transaction sees one snapshot only at REPEATABLE
    READ (SQLite's read transaction already does). The transaction's first statement."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))


@dataclass
class Sums:
    payments: int = 0
    gross: int = 0
    refund_count: int = 0
    refunds: int = 0
    fees: int = 0

    def add(self, amount: int, refund: bool) -> None:
        if refund:
            self.refund_count += 1
            self.refunds += amount
        else:
            self.payments += 1
            self.gross += amount

    @property
    def net(self) -> int:
        return self.gross - self.refunds

    @property
    def net_of_fees(self) -> int:
        return self.gross - self.refunds - self.fees


@dataclass
class Report:
    agencies: list[Agency]  # the agencies the report covers (one, or every agency of the province)
    start: date
    end: date  # included
    grain: Grain
    summary: Sums = field(default_factory=Sums)
    by_method: dict[str, Sums] = field(default_factory=dict)
    by_procedure: dict[tuple[str, str, str], Sums] = field(default_factory=dict)  # (agency code, code, name)
    by_period: dict[date, Sums] = field(default_factory=dict)  # a day, or a month's first day
    by_agency: dict[str, Sums] = field(default_factory=dict)  # agency code
    trend: dict[date, Sums] = field(default_factory=dict)  # the TREND_DAYS days that end on ``end``
    open_exceptions: int = 0


def _period_key(day: date, grain: Grain) -> date:
    return day.replace(day=1) if grain is Grain.month else day


def _periods(start: date, end: date, grain: Grain) -> list[date]:
    keys: list[date] = []
    day = start
    while day <= end:
        key = _period_key(day, grain)
        if not keys or keys[-1] != key:
            keys.append(key)
        day += timedelta(days=1)
    return keys


def _sums(table: dict[K, Sums], key: K) -> Sums:
    found = table.get(key)
    if found is None:
        found = table[key] = Sums()
    return found


def _money_rows(
    s: Session, agency_ids: Sequence[str], start: date, end: date
) -> tuple[list[tuple[str, str, str, int, datetime]], list[tuple[str, str, str, int, datetime]]]:
    """(agency id, method, procedure id, amount, when) of the payments that succeeded and of the refunds that
    completed from ``start`` to ``end``."""
    low, high = day_start(start), day_start(end + timedelta(days=1))
    paid = s.execute(
        select(
            col(Payment.agency_id),
            col(Payment.gateway),
            col(Dossier.procedure_id),
            col(Payment.amount),
            col(Payment.succeeded_at),
        )
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(
            col(Payment.agency_id).in_(agency_ids),
            col(Payment.status).in_(sorted(PAID)),
            col(Payment.succeeded_at) >= low,
            col(Payment.succeeded_at) < high,
        )
    ).all()
    refunded = s.execute(
        select(
            col(Payment.agency_id),
            col(Payment.gateway),
            col(Dossier.procedure_id),
            col(Refund.amount),
            col(Refund.completed_at),
        )
        .join(Payment, col(Payment.id) == col(Refund.payment_id))
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(
            col(Payment.agency_id).in_(agency_ids),
            col(Refund.status) == RefundStatus.succeeded,
            col(Refund.completed_at) >= low,
            col(Refund.completed_at) < high,
        )
    ).all()
    return [tuple(r) for r in paid], [tuple(r) for r in refunded]


def _fee_rows(s: Session, agency_ids: Sequence[str], start: date, end: date) -> list[tuple[str, str, int, date]]:
    rows = s.execute(
        select(
            col(StatementEntry.agency_id),
            col(StatementEntry.source),
            col(StatementEntry.fee),
            col(StatementEntry.booked_on),
        ).where(
            col(StatementEntry.agency_id).in_(agency_ids),
            col(StatementEntry.booked_on) >= start,
            col(StatementEntry.booked_on) <= end,
            col(StatementEntry.fee) != 0,
        )
    ).all()
    return [tuple(r) for r in rows]


def report(s: Session, agencies: list[Agency], start: date, end: date, grain: Grain) -> Report:
    """The report of ``agencies`` from ``start`` to ``end`` (both included), with the trend of the 30 days that
    end on ``end``."""
    ids = [a.id for a in agencies]
    codes = {a.id: a.code for a in agencies}
    trend_start = min(start, end - timedelta(days=TREND_DAYS - 1))
    procedures = {
        p.id: (codes[p.agency_id], p.code, p.name)
        for p in s.execute(select(Procedure).where(col(Procedure.agency_id).in_(ids))).scalars()
    }
    paid, refunded = _money_rows(s, ids, trend_start, end)
    fees = _fee_rows(s, ids, trend_start, end)
    out = Report(agencies, start, end, grain)
    out.by_period = {key: Sums() for key in _periods(start, end, grain)}
    out.trend = {end - timedelta(days=n): Sums() for n in range(TREND_DAYS - 1, -1, -1)}
    for agency in agencies:
        out.by_agency[agency.code] = Sums()

    for rows, refund in ((paid, False), (refunded, True)):
        for agency_id, method, procedure_id, amount, moment in rows:
            day = vietnam_day(moment)
            targets = [out.trend[day]] if day in out.trend else []
            if start <= day <= end:
                key = procedures.get(procedure_id, (codes[agency_id], "?", "?"))
                targets += _in_period(out, codes[agency_id], method, key, day)
            for t in targets:
                t.add(amount, refund)
    for agency_id, source, fee, booked in fees:
        targets = [out.trend[booked]] if booked in out.trend else []
        if start <= booked <= end:
            # A fee belongs to a method (the gateway whose statement it is), not to a procedure.
            period = out.by_period[_period_key(booked, grain)]
            targets += [out.summary, _sums(out.by_method, source), period, out.by_agency[codes[agency_id]]]
        for t in targets:
            t.fees += fee
    out.by_method = dict(sorted(out.by_method.items()))
    out.by_procedure = dict(sorted(out.by_procedure.items()))
    out.open_exceptions = int(
        s.execute(
            select(func.count())
            .select_from(ReconException)
            .where(
                col(ReconException.agency_id).in_(ids),
                col(ReconException.status) == ExceptionStatus.open,
                col(ReconException.business_day) >= start,
                col(ReconException.business_day) <= end,
            )
        ).scalar_one()
    )
    return out


def _in_period(out: Report, code: str, method: str, procedure: tuple[str, str, str], day: date) -> list[Sums]:
    return [
        out.summary,
        _sums(out.by_method, method),
        _sums(out.by_procedure, procedure),
        out.by_period[_period_key(day, out.grain)],
        out.by_agency[code],
    ]


# --- the province's month -----------------------------------------------------------------------------------------
@dataclass
class AgencyMonth:
    code: str
    name: str
    dossiers: int = 0  # dossiers created in the month with a fee to pay
    dossiers_paid: int = 0  # of those, paid through the service
    payments: int = 0  # payments that succeeded in the month
    amount: int = 0
    by_method: dict[str, int] = field(default_factory=dict)  # amounts
    median_minutes: float | None = None  # from a dossier's creation to its payment, over the month's payments
    open_exceptions: int = 0

    @property
    def cashless_share(self) -> float | None:
        """The share of the month's dossiers with fees that were paid through the service (without cash)."""
        return self.dossiers_paid / self.dossiers if self.dossiers else None


@dataclass
class ProvinceMonth:
    month: date  # its first day
    agencies: list[AgencyMonth]
    total: AgencyMonth
    methods: list[str]


def province_month(s: Session, agencies: list[Agency], month: date) -> ProvinceMonth:
    first, last = month_bounds(month)
    low, high = day_start(first), day_start(last + timedelta(days=1))
    ids = [a.id for a in agencies]
    rows = {a.id: AgencyMonth(a.code, a.name) for a in agencies}
    total = AgencyMonth("", "")
    dossiers = s.execute(
        select(col(Dossier.agency_id), col(Dossier.paid_at)).where(
            col(Dossier.agency_id).in_(ids),
            col(Dossier.total_amount) > 0,
            col(Dossier.created_at) >= low,
            col(Dossier.created_at) < high,
        )
    ).all()
    for agency_id, paid_at in dossiers:
        for row in (rows[agency_id], total):
            row.dossiers += 1
            row.dossiers_paid += paid_at is not None
    payments = s.execute(
        select(
            col(Payment.agency_id),
            col(Payment.gateway),
            col(Payment.amount),
            col(Payment.succeeded_at),
            col(Dossier.created_at),
        )
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(
            col(Payment.agency_id).in_(ids),
            col(Payment.status).in_(sorted(PAID)),
            col(Payment.succeeded_at) >= low,
            col(Payment.succeeded_at) < high,
        )
    ).all()
    waits: dict[str, list[float]] = defaultdict(list)
    methods: set[str] = set()
    for agency_id, method, amount, succeeded, created in payments:
        methods.add(method)
        minutes = (_aware(succeeded) - _aware(created)).total_seconds() / 60
        waits[agency_id].append(minutes)
        waits[""].append(minutes)
        for row in (rows[agency_id], total):
            row.payments += 1
            row.amount += amount
            row.by_method[method] = row.by_method.get(method, 0) + amount
    for agency_id, row in rows.items():
        row.median_minutes = statistics.median(waits[agency_id]) if waits[agency_id] else None
    total.median_minutes = statistics.median(waits[""]) if waits[""] else None
    exceptions = s.execute(
        select(col(ReconException.agency_id), func.count())
        .where(
            col(ReconException.agency_id).in_(ids),
            col(ReconException.status) == ExceptionStatus.open,
            col(ReconException.business_day) >= first,
            col(ReconException.business_day) <= last,
        )
        .group_by(col(ReconException.agency_id))
    ).all()
    for agency_id, count in exceptions:
        rows[agency_id].open_exceptions = int(count)
        total.open_exceptions += int(count)
    return ProvinceMonth(first, list(rows.values()), total, sorted(methods))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def all_agencies(s: Session) -> list[Agency]:
    return list(s.execute(select(Agency).order_by(col(Agency.code))).scalars())
