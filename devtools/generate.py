"""Realistic reconciliation data with a known set of discrepancies, for tests, demonstrations and the benchmark.

``generate`` makes one agency's business day (GMT+7) in the database and the files that settle it:

- an agency with six procedures and their fee schedules (fictitious codes and names, typical amounts);
- one dossier per paid payment, its fee lines drawn from the schedule, a Vietnamese payer;
- the payments of the day at VNPay, MoMo and VietQR bank transfer, spread over the day as office traffic is (busy
  mornings and afternoons, a trickle at night), with payments at the very first and last instants of the day, a
  failed or expired earlier attempt on some dossiers, and a few payments of the evening before and the minutes
  after, which must not count for the day;
- an e-receipt (``document`` row, template 5, numbered without gaps) per paid payment, issued seconds later, and the
  series counter that follows them. The ``xml`` column holds a small placeholder, not a signed document: signing a
  million receipts would cost hours and matching never reads it;
- VietQR credits already reported by the bank's notification (``bank_credit`` rows), as the service records them;
- completed refunds on some VNPay and MoMo payments;
- a VNPay CSV and a MoMo CSV settlement file (gateway fee on every line; payments after the gateway's cut-off, 23:00
  at VNPay and 22:00 at MoMo, are settled on the next day, T+1) and a bank statement (MT940 or camt.053) of the
  VietQR credits, whose memos carry the payment reference the way bank apps print it (cased, spaced, dashed,
  between other words).

On top of that it injects exactly the requested number of discrepancies of every category of
``payments.reconcile.matching``, each on payments of its own so that each gives exactly one finding, and records
them in the ``Manifest``: with the files imported, ``matching.run_day`` for that day must find exactly those and
match ``Manifest.matched`` payments. What each category is made of:

- ``paid_not_settled``: a paid payment whose line is missing from its file (a VietQR one was notified, not stated);
- ``settled_unknown``: a gateway line with a reference of no payment; or a line (any source) for an attempt that
  expired; or a refund line for a payment nobody refunded;
- ``amount_mismatch``: a gateway line for another amount than the payment's;
- ``duplicate_payment``: a payment settled by two lines (paid twice); or a second, expired attempt on an already
  paid dossier that the gateway or bank settled anyway;
- ``paid_without_receipt`` / ``receipt_without_payment``: a settled payment without its receipt; a receipt for an
  attempt that failed;
- ``refund_not_settled``: a completed refund with no refund line;
- ``transfer_underpaid`` / ``transfer_overpaid``: a bank credit for a VietQR payment, below or above the fee, that
  left the payment waiting;
- ``transfer_unmatched``: a bank credit whose memo has no reference, a cut one, or one of no payment.

Everything but the agency's and procedures' ids derives from ``seed`` (with the agency code and the day): the same
arguments give the same payments and byte-identical files. The manifest is about ``day`` only: the evening before
and the minutes after are there as neighbours that must not count, not as days of their own.

``write_files`` writes clean settlement files for a day from whatever the database holds (no generation).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import pickle
import random
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import Connection
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from adapters.momo import PAYMENT_PREFIX as MOMO_PREFIX
from adapters.momo import momo_id
from adapters.statements.base import GMT7, LineKind, StatementFormat, StatementLine
from adapters.vietqr import find_reference, make_reference
from adapters.vnpay import ascii_text, txn_ref
from devtools.statement_writers import write_file
from invoices.numbering import series_for_year
from invoices.tables import Document, SeriesCounter
from payments.agency.models import Agency, FeeKind, FeeScheduleLine, Procedure
from payments.core.context import AppContext
from payments.core.db import Database
from payments.core.types import id_time
from payments.dossier.models import Dossier, DossierFeeLine
from payments.payment.models import Payment, Refund
from payments.payment.states import PAID
from payments.reconcile.importer import BANK
from payments.reconcile.matching import day_bounds
from payments.reconcile.models import EXCEPTIONS, Category, StatementEntry
from payments.transfer.models import BankCredit

BATCH = 5000
GATEWAY_FORMATS = {"vnpay": StatementFormat.vnpay_csv, "momo": StatementFormat.momo_csv}
BANK_FORMATS = (StatementFormat.mt940, StatementFormat.camt053)
DEFAULT_FORMATS = (StatementFormat.vnpay_csv, StatementFormat.momo_csv, StatementFormat.camt053)
DEFAULT_MIX = {"vnpay": 0.45, "momo": 0.30, "vietqr": 0.25}
SOURCE = {"vnpay": "vnpay", "momo": "momo", "vietqr": BANK}
# Lines of payments after these local times are booked on the next day; a bank books a late transfer past midnight.
CUTOFF = {"vnpay": time(23, 0), "momo": time(22, 0), "vietqr": time(23, 55)}
# Illustrative merchant fees (rate, minimum): what the gateway keeps from each payment line.
FEES = {"vnpay": (0.011, 1_650), "momo": (0.015, 1_000)}
RETRY_SHARE = 0.03  # dossiers with an earlier attempt that failed, expired or was cancelled
REFUND_SHARE = 0.01  # gateway payments refunded later the same day
NEIGHBOUR_SHARE = 0.01  # payments of the evening before and the minutes after the day
REFERENCE_SECRET = "lephi-generated-data-reference-secret"  # noqa: S105 - makes test references, guards nothing
RECEIPT_TEMPLATE = "5"
RECEIPT_SERIES = "K26TLP"
RECEIPT_PLACEHOLDER = b"<HDon><!-- placeholder of generated data: not a signed document --></HDon>"
RETURN_URL = "https://dichvucong.example.gov.vn/thanh-toan/ket-qua"
# Local hours' share of the day's payments: office hours, a lunch dip, evenings at home, a quiet night.
HOUR_WEIGHTS = (0.2, 0.1, 0.05, 0.05, 0.1, 0.3, 1, 3, 8, 10, 10, 8, 4, 5, 8, 9, 8, 5, 3, 3, 3, 2.5, 1.5, 0.8)
# Injected discrepancies happen in this window, and the lines they add before LAST_LINE, so that those lines are
# booked on the day whatever the gateway's cut-off.
INJECT_FROM, INJECT_TO = 1800.0, 75600.0
LAST_LINE = 78300.0

# (code, name, share of dossiers, [(fee code, kind, name, unit amount, default quantity, maximum, usual maximum)]).
# The codes and names are fictitious; the amounts are typical of such procedures, not a legal schedule.
Fee = tuple[str, FeeKind, str, int, int, int, int]
PROCEDURES: list[tuple[str, str, float, list[Fee]]] = [
    (
        "2.000488",
        "Cấp Phiếu lý lịch tư pháp cho công dân Việt Nam",
        0.25,
        [
            ("LE_PHI_LLTP", FeeKind.phi, "Phí cung cấp thông tin lý lịch tư pháp", 200_000, 1, 1, 1),
            ("BAN_THEM", FeeKind.phi, "Phiếu lý lịch tư pháp cấp thêm (từ phiếu thứ 3)", 5_000, 0, 20, 3),
        ],
    ),
    (
        "2.000815",
        "Chứng thực bản sao từ bản chính giấy tờ, văn bản",
        0.25,
        [
            ("TRANG", FeeKind.le_phi, "Lệ phí chứng thực bản sao (mỗi trang)", 2_000, 1, 200, 30),
            ("GUI_KQ", FeeKind.service, "Dịch vụ chuyển phát kết quả", 25_000, 0, 1, 1),
        ],
    ),
    (
        "1.002809",
        "Đổi giấy phép lái xe do ngành Giao thông vận tải cấp",
        0.2,
        [
            ("LE_PHI_GPLX", FeeKind.le_phi, "Lệ phí cấp đổi giấy phép lái xe", 135_000, 1, 1, 1),
            ("GUI_KQ", FeeKind.service, "Dịch vụ chuyển phát kết quả", 30_000, 0, 1, 1),
        ],
    ),
    (
        "2.001901",
        "Đăng ký thành lập hộ kinh doanh",
        0.1,
        [("LE_PHI_DKKD", FeeKind.le_phi, "Lệ phí đăng ký hộ kinh doanh", 100_000, 1, 1, 1)],
    ),
    (
        "1.004884",
        "Cấp bản sao trích lục hộ tịch",
        0.1,
        [("BAN_SAO_HT", FeeKind.le_phi, "Lệ phí cấp bản sao trích lục (mỗi bản)", 8_000, 1, 10, 5)],
    ),
    (
        "1.003112",
        "Cấp hộ chiếu phổ thông trong nước",
        0.1,
        [
            ("LE_PHI_HC", FeeKind.le_phi, "Lệ phí cấp hộ chiếu phổ thông", 200_000, 1, 1, 1),
            ("GUI_KQ", FeeKind.service, "Dịch vụ chuyển phát kết quả", 30_000, 0, 1, 1),
        ],
    ),
]
FAMILY = (
    *("Nguyễn",) * 38,
    *("Trần",) * 11,
    *("Lê",) * 9,
    *("Phạm",) * 7,
    *("Hoàng", "Huỳnh", "Phan", "Vũ", "Võ") * 3,
    *("Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý", "Đinh", "Trịnh", "Mai", "Tô", "Lương"),
)
MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Ngọc", "Thanh", "Quốc", "Gia", "Bảo", "Thu", "Xuân", "Hoài", "Công")
GIVEN = (
    *("An", "Anh", "Bình", "Châu", "Chi", "Cường", "Dũng", "Dương", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa"),
    *("Hùng", "Hương", "Huy", "Khánh", "Khoa", "Lan", "Linh", "Long", "Mai", "Minh", "Nam", "Nga", "Ngân", "Nhung"),
    *("Phong", "Phúc", "Phương", "Quang", "Quân", "Sơn", "Tâm", "Thảo", "Thắng", "Trang", "Trung", "Tuấn", "Tú"),
    *("Vân", "Việt", "Vy", "Yến", "Đạt", "Hòa", "Kiên", "Thủy", "Toàn", "Uyên"),
)
BANK_CODES = ("NCB", "VCB", "BIDV", "VIETINBANK", "AGRIBANK", "TCB", "MB", "ACB", "VPB", "TPB", "VIB", "SHB", "SCB")
REFUND_REASONS = (
    "Hồ sơ không đủ điều kiện, hoàn lệ phí",
    "Công dân nộp trùng, hoàn tiền",
    "Giảm số bản sao theo yêu cầu",
    "Không sử dụng dịch vụ chuyển phát",
)


@dataclass(frozen=True)
class ExpectedFinding:
    """One injected discrepancy: the finding the matching run must report for it, and nothing else.

    Findings about a payment, receipt or refund are keyed by its id (``key`` is known now); findings about a
    statement line are keyed by the line's database id, known only once the file is imported: ``lines`` names the
    line(s) by source and transaction id, and ``Manifest.expected_keys`` looks the key up.
    """

    category: Category
    subject: str = ""
    lines: tuple[tuple[str, str], ...] = ()
    why: str = ""

    @property
    def key(self) -> str | None:
        return f"{self.category.value}:{self.subject}" if self.subject else None


@dataclass(frozen=True)
class GeneratedFile:
    path: Path
    format: StatementFormat
    source: str
    lines: int


@dataclass(frozen=True)
class Manifest:
    agency_id: str
    agency_code: str
    day: date
    seed: int
    payments: int  # payment rows made, every status and day included
    matched: int  # payments of the day that the run must count as matched
    expected: tuple[ExpectedFinding, ...]
    files: tuple[GeneratedFile, ...]
    injected: dict[str, int] = field(default_factory=dict)

    def expected_keys(self, db_or_ctx: AppContext | Database) -> set[tuple[str, str]]:
        """(category, key) of every expected finding, as ``matching.Finding.key`` spells it; the files must have
        been imported (a line key is its row id)."""
        wanted = {line for f in self.expected for line in f.lines}
        ids: dict[tuple[str, str], int] = {}
        with _db(db_or_ctx).read() as s:
            pairs = sorted(wanted)
            for start in range(0, len(pairs), 500):
                chunk = pairs[start : start + 500]
                rows = s.exec(
                    select(StatementEntry.source, StatementEntry.external_id, StatementEntry.id).where(
                        StatementEntry.agency_id == self.agency_id,
                        col(StatementEntry.external_id).in_([e for _, e in chunk]),
                    )
                )
                ids.update({(source, ext): int(i or 0) for source, ext, i in rows if (source, ext) in wanted})
        missing = wanted - set(ids)
        if missing:
            raise LookupError(f"lines not imported yet: {sorted(missing)[:5]}")
        keys = set()
        for f in self.expected:
            key = f.key or f"{f.category.value}:e{min(ids[line] for line in f.lines)}"
            keys.add((f.category.value, key))
        return keys


def _db(db_or_ctx: AppContext | Database) -> Database:
    return db_or_ctx if isinstance(db_or_ctx, Database) else db_or_ctx.db


def generate(
    db_or_ctx: AppContext | Database,
    *,
    agency_code: str,
    day: date,
    payments: int,
    discrepancies: int | Mapping[str, int] = 0,
    out_dir: Path,
    seed: int = 0,
    formats: Sequence[StatementFormat | str] = DEFAULT_FORMATS,
    mix: Mapping[str, float] | None = None,
) -> Manifest:
    """Make a new agency ``agency_code`` with ``payments`` ordinary paid payments on ``day`` (plus the payments the
    injected discrepancies, retries and neighbouring days add) and write its settlement files into ``out_dir``.

    ``discrepancies``: how many of every exception category, or a mapping category -> count (others 0).
    ``formats``: the files to write, which decides the gateways in play: ``vnpay_csv`` and ``momo_csv`` for VNPay and
    MoMo, one of ``mt940`` / ``camt053`` for the bank statement of VietQR transfers. ``mix``: each gateway's share
    of the ordinary payments (default 45% VNPay, 30% MoMo, 25% VietQR, limited to the gateways in play).
    """
    counts = _counts(discrepancies)
    gateways, bank_format = _gateways(formats)
    _check_feasible(counts, gateways)
    weights = {g: w for g, w in (mix or DEFAULT_MIX).items() if g in gateways and w > 0}
    if payments and not weights:
        raise ValueError(f"no gateway of {sorted(gateways)} has a share in the mix")
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = _Generator(_db(db_or_ctx), agency_code, day, seed, gateways, weights)
    try:
        gen.seed_agency()
        gen.run(payments, counts)
        files = gen.write(out_dir, bank_format)
    finally:
        gen.close()
    return Manifest(
        agency_id=gen.agency_id,
        agency_code=agency_code,
        day=day,
        seed=seed,
        payments=gen.payment_rows,
        matched=gen.matched,
        expected=tuple(gen.expected),
        files=tuple(files),
        injected={c.value: n for c, n in counts.items()},
    )


def _counts(discrepancies: int | Mapping[str, int]) -> dict[Category, int]:
    if isinstance(discrepancies, int):
        given: Mapping[str, int] = dict.fromkeys((c.value for c in EXCEPTIONS), discrepancies)
    else:
        given = discrepancies
    counts: dict[Category, int] = dict.fromkeys(EXCEPTIONS, 0)
    for name, n in given.items():
        category = Category(name)
        if category not in counts or n < 0:
            raise ValueError(f"cannot inject {n} of {name!r}")
        counts[category] = n
    return counts


def _gateways(formats: Sequence[StatementFormat | str]) -> tuple[set[str], StatementFormat | None]:
    chosen = [StatementFormat(f) for f in formats]
    banks = [f for f in chosen if f in BANK_FORMATS]
    unknown = [f for f in chosen if f not in BANK_FORMATS and f not in GATEWAY_FORMATS.values()]
    if len(banks) > 1 or unknown:
        raise ValueError("formats: vnpay_csv, momo_csv and at most one bank statement (mt940 or camt053)")
    gateways = {g for g, f in GATEWAY_FORMATS.items() if f in chosen} | ({"vietqr"} if banks else set())
    return gateways, banks[0] if banks else None


def _check_feasible(counts: Mapping[Category, int], gateways: set[str]) -> None:
    needs = {
        Category.amount_mismatch: {"vnpay", "momo"},
        Category.refund_not_settled: {"vnpay", "momo"},
        Category.transfer_underpaid: {"vietqr"},
        Category.transfer_overpaid: {"vietqr"},
        Category.transfer_unmatched: {"vietqr"},
    }
    if any(counts.values()) and not gateways:
        raise ValueError("discrepancies need at least one settlement file format")
    for category, needed in needs.items():
        if counts[category] and not needed & gateways:
            raise ValueError(f"{category.value} needs a file of {' or '.join(sorted(needed))}")


# --- generation ----------------------------------------------------------------------------------------------------
Row = dict[str, Any]
# (transaction id, kind, amount, fee, booked on, value date, reference or memo, counterparty, description)
LineRow = tuple[str, str, int, int, date, date | None, str, str | None, str]


class _Spool:
    """One file's lines kept on disk until the file is written, grouped by booking day (a statement is written day
    by day): a million lines held as objects would cost far more memory than the run being measured."""

    def __init__(self) -> None:
        self.days: dict[date, tuple[IO[bytes], list[LineRow]]] = {}

    def add(self, row: LineRow) -> None:
        booked = row[4]
        if booked not in self.days:
            self.days[booked] = (tempfile.TemporaryFile(), [])  # noqa: SIM115 - open until close()
        spill, held = self.days[booked]
        held.append(row)
        if len(held) >= BATCH:
            pickle.dump(held, spill, pickle.HIGHEST_PROTOCOL)
            held.clear()

    def lines(self, *, counterparty: bool = True) -> Iterator[StatementLine]:
        for booked in sorted(self.days):
            spill, held = self.days[booked]
            spill.seek(0)
            while True:
                try:
                    chunk: list[LineRow] = pickle.load(spill)  # noqa: S301  # our own temporary file
                except EOFError:
                    break
                for row in chunk:
                    yield _line(row, counterparty)
            for row in held:
                yield _line(row, counterparty)

    def close(self) -> None:
        for spill, _ in self.days.values():
            spill.close()


def _line(row: LineRow, counterparty: bool) -> StatementLine:
    ext, kind, amount, fee, booked, value_on, reference, party, description = row
    return StatementLine(
        source_line=0,
        external_id=ext,
        kind=LineKind(kind),
        amount=amount,
        fee=fee,
        booked_on=booked,
        value_on=value_on,
        reference=reference,
        counterparty=party if counterparty else None,
        description=description,
    )


def _write(out_dir: Path, stamp: str, source: str, fmt: StatementFormat, spool: _Spool) -> GeneratedFile:
    suffix = {StatementFormat.mt940: "sta", StatementFormat.camt053: "xml"}.get(fmt, "csv")
    path = out_dir / f"{source}-{stamp}.{suffix}"
    # MT940 has no field for the payer's name.
    count = write_file(path, fmt, spool.lines(counterparty=fmt is not StatementFormat.mt940))
    return GeneratedFile(path, fmt, source, count)


@dataclass
class _Dossier:
    row: Row
    code: str
    payer: str
    procedure: str

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def total(self) -> int:
        return int(self.row["total_amount"])


@dataclass
class _Payment:
    row: Row
    dossier: _Dossier
    at: datetime  # when it succeeded, or stopped (local time)

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def gateway(self) -> str:
        return str(self.row["gateway"])

    @property
    def amount(self) -> int:
        return int(self.row["amount"])

    @property
    def reference(self) -> str:
        return str(self.row["gateway_reference"])


class _Generator:
    def __init__(
        self, db: Database, agency_code: str, day: date, seed: int, gateways: set[str], weights: Mapping[str, float]
    ) -> None:
        self.db, self.code, self.day = db, agency_code, day
        self.rng = rng = random.Random(f"{seed}:{agency_code}:{day.isoformat()}")  # noqa: S311 - reproducible data
        self.gateways = gateways
        self.mix = list(weights)
        self.mix_weights = list(itertools.accumulate(weights.values()))
        self.midnight = datetime.combine(day, time(), GMT7)
        self.start, self.end = day_bounds(day)
        self.agency_id = ""
        self.procedures: list[tuple[str, str, list[Fee]]] = []
        self.procedure_weights = list(itertools.accumulate(w for _, _, w, _ in PROCEDURES))
        self.rows: dict[Any, list[Row]] = defaultdict(list)
        self.spools = {SOURCE[g]: _Spool() for g in gateways}
        self.expected: list[ExpectedFinding] = []
        self.matched = self.payment_rows = self.dossier_no = 0
        self.receipt_no: dict[int, int] = defaultdict(int)
        self.txn_no = {"vnpay": rng.randrange(14_000_000, 15_000_000), "momo": rng.randrange(4 * 10**9, 5 * 10**9)}
        self.bank_no = rng.randrange(10**8)
        self.bank_prefix = f"FT{day:%y}{day.timetuple().tm_yday:03d}"

    # -- plumbing ------------------------------------------------------------------------------------------------------
    def new_id(self, prefix: str, at: datetime) -> str:
        """An identifier laid out as the service makes them, made at ``at`` (the row's own time)."""
        return f"{prefix}_{id_time(at.timestamp())}{self.rng.getrandbits(64):016x}"

    def add(self, model: Any, row: Row) -> Row:
        self.rows[model].append(row)
        return row

    def flush(self) -> None:
        with self.db.write() as s:
            conn = s.connection()
            for model in (Dossier, DossierFeeLine, Payment, Document, Refund, BankCredit):  # foreign keys first
                rows = self.rows.pop(model, None)
                if rows:
                    _bulk_insert(conn, cast(Any, model).__tablename__, rows)

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()

    def local(self, seconds: float) -> datetime:
        return self.midnight + timedelta(seconds=seconds)

    def later(self, at: datetime, low: float, high: float) -> datetime:
        """A moment ``low`` to ``high`` minutes after ``at`` whose line is still booked on the day."""
        return min(at + timedelta(minutes=self.rng.uniform(low, high)), self.local(LAST_LINE))

    def name(self) -> str:
        return f"{self.rng.choice(FAMILY)} {self.rng.choice(MIDDLE)} {self.rng.choice(GIVEN)}"

    # -- the agency ----------------------------------------------------------------------------------------------------
    def seed_agency(self) -> None:
        with self.db.write() as s:
            if s.exec(select(Agency.id).where(Agency.code == self.code)).first() is not None:
                raise ValueError(f"agency {self.code!r} exists: generated data goes into a new agency")
            agency = Agency(
                code=self.code,
                name=f"Trung tâm Phục vụ hành chính công tỉnh Mẫu ({self.code})",
                tax_code=f"0109{self.rng.randrange(10**6):06d}",
                address="01 Đường Mẫu, Phường Trung Tâm, Tỉnh Mẫu",
                bank_account="0011001234567",
                bank_name="Ngân hàng TMCP Mẫu",
                payment_methods=sorted(self.gateways),
            )
            s.add(agency)
            s.flush()
            self.agency_id = agency.id
            for position, (code, name, _, fees) in enumerate(PROCEDURES):
                procedure = Procedure(agency_id=agency.id, code=code, name=name)
                s.add(procedure)
                s.flush()
                self.procedures.append((procedure.id, name, fees))
                for i, (fee_code, kind, fee_name, unit, default, most, _) in enumerate(fees):
                    line = FeeScheduleLine(
                        procedure_id=procedure.id,
                        code=fee_code,
                        kind=kind,
                        name=fee_name,
                        unit_amount=unit,
                        default_quantity=default,
                        max_quantity=most,
                        position=position * 10 + i,
                    )
                    s.add(line)

    # -- the day -------------------------------------------------------------------------------------------------------
    def run(self, payments: int, counts: Mapping[Category, int]) -> None:
        neighbours = int(payments * NEIGHBOUR_SHARE) + (2 if payments else 0)
        for seconds in self.neighbour_times(neighbours // 2, before=True):
            self.ordinary(seconds)
        injected = sorted(
            (self.rng.uniform(INJECT_FROM, INJECT_TO), category.value, i)
            for category, n in counts.items()
            for i in range(n)
        )
        ordinary = ((t, "", 0) for t in self.day_times(payments))
        for seconds, category, i in heapq.merge(ordinary, injected):
            if category:
                getattr(self, f"inject_{category}")(seconds, i)
            else:
                self.ordinary(seconds)
            if len(self.rows[Payment]) >= BATCH:
                self.flush()
        for seconds in self.neighbour_times(neighbours - neighbours // 2, before=False):
            self.ordinary(seconds)
        self.flush()
        with self.db.write() as s:
            for year, last in self.receipt_no.items():
                series = series_for_year(RECEIPT_SERIES, year)
                s.add(SeriesCounter(agency_id=self.agency_id, template=RECEIPT_TEMPLATE, series=series, year=year,
                                    last_number=last))  # fmt: skip

    def day_times(self, n: int) -> list[float]:
        """Seconds after local midnight, sorted; the first and last instants of the day are always among them."""
        edges = [0.0, 86399.999999, 30.0, 86340.0][: min(n, 4)]
        hours = self.rng.choices(range(24), weights=HOUR_WEIGHTS, k=n - len(edges))
        return sorted([h * 3600 + self.rng.random() * 3600 for h in hours] + edges)

    def neighbour_times(self, n: int, *, before: bool) -> list[float]:
        """The evening before, after every cut-off (their lines are booked on the day), or the half hour after."""
        if n <= 0:
            return []
        if before:
            return sorted([-1e-6] + [-self.rng.uniform(1, 290) for _ in range(n - 1)])
        return sorted([86400.0] + [86400 + self.rng.uniform(1, 1800) for _ in range(n - 1)])

    def pick_gateway(self, among: Iterable[str] | None = None) -> str:
        if among is None:
            return self.mix[bisect.bisect(self.mix_weights, self.rng.random() * self.mix_weights[-1])]
        return self.rng.choice(sorted(set(among) & self.gateways))

    # -- rows ----------------------------------------------------------------------------------------------------------
    def dossier(self, at: datetime, *, paid: bool) -> _Dossier:
        rng = self.rng
        pick = bisect.bisect(self.procedure_weights, rng.random() * self.procedure_weights[-1])
        procedure_id, procedure_name, fees = self.procedures[pick]
        self.dossier_no += 1
        created = (at - timedelta(minutes=rng.uniform(3, 600))).astimezone(UTC)
        dossier_id = self.new_id("dos", created)
        total = 0
        for position, (fee_code, kind, name, unit, default, _, usual) in enumerate(fees):
            quantity = rng.randint(default, usual)
            if quantity:
                total += unit * quantity
                line: Row = {"dossier_id": dossier_id, "fee_code": fee_code, "kind": kind.value, "name": name}
                line.update(unit_amount=unit, quantity=quantity, amount=unit * quantity, position=position)
                self.add(DossierFeeLine, line)
        payer = self.name()
        code = f"HS{at:%y%m%d}-{self.dossier_no:07d}"
        row = {
            "id": dossier_id,
            "agency_id": self.agency_id,
            "code": code,
            "procedure_id": procedure_id,
            "payer_name": payer,
            "payer_email": f"congdan{rng.randrange(10**6)}@example.vn" if rng.random() < 0.6 else None,
            "payer_phone": f"09{rng.randrange(10**8):08d}" if rng.random() < 0.8 else None,
            "payer_tax_code": None,
            "payer_address": None,
            "total_amount": total,
            "status": "paid" if paid else "unpaid",
            "pay_token": f"{rng.getrandbits(128):032x}",
            "created_at": created,
            "updated_at": at.astimezone(UTC) if paid else created,
            "paid_at": at.astimezone(UTC) if paid else None,
        }
        return _Dossier(self.add(Dossier, row), code, payer, procedure_name)

    def payment(self, dossier: _Dossier, gateway: str, at: datetime, status: str) -> _Payment:
        """An attempt to pay the whole dossier; ``at`` is when it succeeded, or when it stopped."""
        rng = self.rng
        token = f"gtk_{rng.getrandbits(96):024x}"
        created = at - timedelta(seconds=rng.uniform(20, 600))
        paid = status in _PAID
        self.payment_rows += 1
        expires = at if status == "expired" else created + timedelta(hours=24 if gateway == "vietqr" else 0.25)
        row = {
            "id": self.new_id("pay", created),
            "agency_id": self.agency_id,
            "dossier_id": dossier.id,
            "gateway": gateway,
            "amount": dossier.total,
            "currency": "VND",
            "status": status,
            "gateway_token": token,
            "gateway_reference": _reference(gateway, token, created),
            "next_url": None,
            "return_url": RETURN_URL,
            "description": f"Lệ phí hồ sơ {dossier.code} - {dossier.procedure}"[:255],
            "refunded_amount": 0,
            "refund_reserved": 0,
            "requires_review": False,
            "expires_at": expires.astimezone(UTC),
            "created_at": created.astimezone(UTC),
            "updated_at": at.astimezone(UTC),
            "succeeded_at": at.astimezone(UTC) if paid else None,
        }
        return _Payment(self.add(Payment, row), dossier, at)

    def receipt(self, p: _Payment) -> str:
        issued = (p.at + timedelta(seconds=self.rng.uniform(2, 90))).astimezone(GMT7)
        self.receipt_no[issued.year] += 1
        row = {
            "id": self.new_id("doc", issued),
            "agency_id": self.agency_id,
            "payment_id": p.id,
            "purpose": "original",
            "template": RECEIPT_TEMPLATE,
            "series": series_for_year(RECEIPT_SERIES, issued.year),
            "year": issued.year,
            "number": self.receipt_no[issued.year],
            "issue_date": issued.date(),
            "total": p.amount,
            "lookup_code": "".join(self.rng.choices(LOOKUP_ALPHABET, k=12)),
            "xml": RECEIPT_PLACEHOLDER,
            "related_document_id": None,
            "refund_id": None,
            "reason": None,
            "created_by": None,
            "created_at": issued.astimezone(UTC),
        }
        return str(self.add(Document, row)["id"])

    def notification(self, p: _Payment, ext: str, memo: str) -> None:
        """The bank's credit notification, recorded and matched before any statement."""
        row = {
            "id": self.new_id("crd", p.at),
            "gateway": "vietqr",
            "bank_transaction_id": ext,
            "source": "notification",
            "agency_id": self.agency_id,
            "payment_id": p.id,
            "reference": p.reference,
            "amount": p.amount,
            "expected_amount": p.amount,
            "status": "matched",
            "reason": "exact amount",
            "memo": memo,
            "received_at": p.at.astimezone(UTC),
        }
        self.add(BankCredit, row)

    def refund(self, p: _Payment, amount: int, at: datetime) -> str:
        row = {
            "id": self.new_id("rfd", at),
            "payment_id": p.id,
            "amount": amount,
            "reason": self.rng.choice(REFUND_REASONS),
            "status": "succeeded",
            "gateway_token": f"rtk_{self.rng.getrandbits(96):024x}",
            "gateway_reference": f"RF{self.rng.getrandbits(48):012X}",
            "failure_reason": None,
            "created_by": "staff:ke-toan",
            "created_at": (at - timedelta(minutes=2)).astimezone(UTC),
            "completed_at": at.astimezone(UTC),
        }
        full = amount == p.amount
        p.row.update(refunded_amount=amount, status="refunded" if full else "partially_refunded")
        if full:
            p.dossier.row["status"] = "refunded"
        return str(self.add(Refund, row)["id"])

    def refund_amount(self, p: _Payment) -> int:
        return self.rng.choice((p.amount, p.amount // 2000 * 1000 or p.amount))

    # -- lines ---------------------------------------------------------------------------------------------------------
    def settle(
        self, p: _Payment, *, amount: int | None = None, at: datetime | None = None, notified: bool = False
    ) -> tuple[str, str]:
        """The line that settles a payment (a bank credit for VietQR, ``notified`` before by the bank with the same
        transaction id); answers (source, transaction id)."""
        at = at or p.at
        amount = p.amount if amount is None else amount
        if p.gateway == "vietqr":
            memo = self.memo(p)
            line = self.credit(amount, _booked(at, "vietqr"), memo, p.dossier.payer)
            if notified:
                self.notification(p, line[1], memo)
            return line
        return self.gateway_line(p.gateway, "payment", amount, at, p.reference, p.dossier.code)

    def gateway_line(
        self, gateway: str, kind: str, amount: int, at: datetime, reference: str, code: str
    ) -> tuple[str, str]:
        self.txn_no[gateway] += self.rng.randint(1, 3)  # other merchants' transactions come in between
        ext = str(self.txn_no[gateway])
        rate, least = FEES[gateway]
        fee = max(least, round(amount * rate)) if kind == "payment" else 0
        booked = _booked(at, gateway)
        if gateway == "vnpay":
            text = ("Thanh toan le phi ho so " if kind == "payment" else "Hoan tien ho so ") + code
            row: LineRow = (ext, kind, amount, fee, booked, None, reference, self.rng.choice(BANK_CODES), text)
        else:
            text = ("Thanh toán lệ phí hồ sơ " if kind == "payment" else "Hoàn tiền hồ sơ ") + code
            row = (ext, kind, amount, fee, booked, None, reference, None, text)
        self.spools[gateway].add(row)
        return gateway, ext

    def credit(self, amount: int, booked: date, memo: str, payer: str) -> tuple[str, str]:
        self.bank_no = (self.bank_no + self.rng.randint(1, 4)) % 10**9
        ext = f"{self.bank_prefix}{self.bank_no:09d}"
        self.spools[BANK].add((ext, "credit", amount, 0, booked, booked, memo, ascii_text(payer).upper(), "NAPAS 247"))
        return BANK, ext

    def memo(self, p: _Payment) -> str:
        """A transfer memo carrying the reference as bank apps print it; kept only if the reference reads back."""
        ref, payer, code = p.reference, ascii_text(p.dossier.payer).upper(), p.dossier.code
        variants = (
            f"{payer} chuyen tien {ref}",
            f"{ref} {payer} nop le phi",
            f"MBVCB.{self.rng.randrange(10**7):07d}.{ref}.{payer} chuyen khoan",
            f"CK {ref[:5]}-{ref[5:9]}-{ref[9:]} HS {code}",
            f"{ref.lower()} {payer.lower()}",
            f"{payer} {ref[:2]} {ref[2:6]} {ref[6:10]} {ref[10:]}",
        )
        memo = self.rng.choice(variants)
        return memo if find_reference(memo) == ref else ref

    # -- ordinary traffic ----------------------------------------------------------------------------------------------
    def ordinary(self, seconds: float) -> None:
        """A dossier paid and settled as it should be: receipt, line (a bank credit also notified), maybe a refund."""
        rng = self.rng
        at = self.local(seconds)
        dossier = self.dossier(at, paid=True)
        if rng.random() < RETRY_SHARE:
            stopped = at - timedelta(minutes=rng.uniform(16, 90))
            self.payment(dossier, self.pick_gateway(), stopped, rng.choice(("failed", "expired", "cancelled")))
        p = self.payment(dossier, self.pick_gateway(), at, "succeeded")
        self.receipt(p)
        self.settle(p, notified=True)
        in_day = self.start <= at < self.end
        # A refund completes on the day (it starts before 20:00 and takes at most three hours).
        if in_day and p.gateway != "vietqr" and seconds < 72000 and rng.random() < REFUND_SHARE:
            done = at + timedelta(minutes=rng.uniform(20, 180))
            amount = self.refund_amount(p)
            self.refund(p, amount, done)
            self.gateway_line(p.gateway, "refund", -amount, done, p.reference, dossier.code)
        self.matched += in_day

    def paid(self, seconds: float, among: Iterable[str] | None = None, *, receipt: bool = True) -> _Payment:
        at = self.local(seconds)
        p = self.payment(self.dossier(at, paid=True), self.pick_gateway(among or self.gateways), at, "succeeded")
        if receipt:
            self.receipt(p)
        return p

    def expect(
        self, category: Category, subject: str = "", lines: Iterable[tuple[str, str]] = (), why: str = ""
    ) -> None:
        self.expected.append(ExpectedFinding(category, subject, tuple(lines), why))

    # -- injected discrepancies: each makes exactly one finding --------------------------------------------------------
    def inject_paid_not_settled(self, seconds: float, _: int) -> None:
        p = self.paid(seconds)
        if p.gateway == "vietqr":  # notified by the bank, missing from its statement
            self.notification(p, f"{self.bank_prefix}N{self.rng.randrange(10**8):08d}", p.reference)
        self.expect(Category.paid_not_settled, p.id, why=f"{p.gateway} line missing")

    def inject_settled_unknown(self, seconds: float, i: int) -> None:
        gateway_files = sorted({"vnpay", "momo"} & self.gateways)
        variants = ("expired", "unknown", "refund") if gateway_files else ("expired",)
        variant = variants[i % len(variants)]
        at = self.local(seconds)
        if variant == "unknown":
            gateway = self.rng.choice(gateway_files)
            reference = _reference(gateway, f"gtk_{self.rng.getrandbits(96):024x}", at)
            amount = self.rng.choice((50_000, 135_000, 200_000))
            line = self.gateway_line(gateway, "payment", amount, at, reference, f"HS{at:%y%m%d}-9{i:06d}")
            self.expect(Category.settled_unknown, lines=[line], why=f"{gateway} reference of no payment")
        elif variant == "expired":
            p = self.payment(self.dossier(at, paid=False), self.pick_gateway(), at, "expired")
            line = self.settle(p, at=self.later(at, 1, 30))
            self.expect(Category.settled_unknown, lines=[line], why=f"{p.gateway} settled an expired attempt")
        else:
            p = self.paid(seconds, gateway_files)
            self.settle(p)
            self.matched += 1
            done = self.later(at, 20, 120)
            line = self.gateway_line(p.gateway, "refund", -self.refund_amount(p), done, p.reference, p.dossier.code)
            self.expect(Category.settled_unknown, lines=[line], why=f"{p.gateway} refund line without a refund")

    def inject_amount_mismatch(self, seconds: float, _: int) -> None:
        p = self.paid(seconds, {"vnpay", "momo"})
        delta = self.rng.choice((-10_000, -5_000, -1_000, 1_000, 25_000))
        if p.amount + delta <= 0:
            delta = 1_000
        line = self.settle(p, amount=p.amount + delta)
        self.expect(Category.amount_mismatch, lines=[line], why=f"{p.gateway} line off by {delta}")

    def inject_duplicate_payment(self, seconds: float, i: int) -> None:
        p = self.paid(seconds)
        first = self.settle(p, notified=True)
        if i % 2 == 0:
            second = self.settle(p, at=self.later(p.at, 1, 20))
            self.expect(Category.duplicate_payment, lines=[first, second], why=f"paid twice at {p.gateway}")
            return
        self.matched += 1
        late = self.payment(p.dossier, self.pick_gateway(), self.later(p.at, 1, 20), "expired")
        line = self.settle(late)
        self.expect(Category.duplicate_payment, lines=[line], why=f"a second attempt settled by {late.gateway}")

    def inject_paid_without_receipt(self, seconds: float, _: int) -> None:
        p = self.paid(seconds, receipt=False)
        self.settle(p, notified=True)
        self.matched += 1
        self.expect(Category.paid_without_receipt, p.id, why=f"{p.gateway} payment")

    def inject_receipt_without_payment(self, seconds: float, _: int) -> None:
        at = self.local(seconds)
        p = self.payment(self.dossier(at, paid=False), self.pick_gateway(), at, "failed")
        self.expect(Category.receipt_without_payment, self.receipt(p), why=f"receipt of a failed {p.gateway} attempt")

    def inject_refund_not_settled(self, seconds: float, _: int) -> None:
        p = self.paid(seconds, {"vnpay", "momo"})
        self.settle(p)
        self.matched += 1
        refund_id = self.refund(p, self.refund_amount(p), p.at + timedelta(minutes=self.rng.uniform(20, 120)))
        self.expect(Category.refund_not_settled, refund_id, why=f"{p.gateway} refund without its line")

    def transfer(self, seconds: float, category: Category, delta: int) -> None:
        at = self.local(seconds)
        p = self.payment(self.dossier(at, paid=False), "vietqr", at, "pending")
        delta = max(delta, -(p.amount // 2))  # a fee can be as small as 2,000 VND
        line = self.settle(p, amount=p.amount + delta)
        self.expect(category, lines=[line], why=f"transfer of {p.amount + delta} for {p.amount}")

    def inject_transfer_underpaid(self, seconds: float, _: int) -> None:
        self.transfer(seconds, Category.transfer_underpaid, -self.rng.choice((1_000, 5_000, 25_000)))

    def inject_transfer_overpaid(self, seconds: float, _: int) -> None:
        self.transfer(seconds, Category.transfer_overpaid, self.rng.choice((1_000, 10_000, 100_000)))

    def inject_transfer_unmatched(self, seconds: float, i: int) -> None:
        at = self.local(seconds)
        payer = ascii_text(self.name()).upper()
        stranger = make_reference(REFERENCE_SECRET, f"unknown-{self.rng.getrandbits(64)}")
        memo = (
            f"{payer} chuyen tien nop le phi ho so",  # no reference at all
            f"{payer} CK {stranger}",  # a reference of no payment
            f"CK {stranger[:-3]} {payer}",  # the reference cut short by the payer's bank app
        )[i % 3]
        if i % 3 != 1 and find_reference(memo) is not None:  # a name that happens to read as a reference
            memo = "chuyen tien"
        amount = self.rng.choice((50_000, 135_000, 200_000))
        line = self.credit(amount, _booked(at, "vietqr"), memo, payer)
        self.expect(Category.transfer_unmatched, lines=[line], why=f"memo {memo!r}")

    # -- files ---------------------------------------------------------------------------------------------------------
    def write(self, out_dir: Path, bank_format: StatementFormat | None) -> list[GeneratedFile]:
        stamp = f"{self.code}-{self.day:%Y%m%d}"
        files = [_write(out_dir, stamp, g, f, self.spools[g]) for g, f in GATEWAY_FORMATS.items() if g in self.gateways]
        if bank_format is not None:
            files.append(_write(out_dir, stamp, BANK, bank_format, self.spools[BANK]))
        return files


_PAID = frozenset(s.value for s in PAID)
LOOKUP_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def _bulk_insert(conn: Connection, table: str, rows: list[Row]) -> None:
    """Rows at the driver, below SQLAlchemy's per-value processing, which would cost more than the database's own
    work for a million payments: ``COPY`` on PostgreSQL; on SQLite, times as SQLAlchemy stores them there (naive
    UTC text) and days as ISO text."""
    columns = list(rows[0])
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        with driver.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(tuple(row.values()))
        return
    values = [tuple(map(_sqlite_value, row.values())) for row in rows]
    statement = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608 - our names
    conn.exec_driver_sql(statement, values)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _reference(gateway: str, token: str, created: datetime) -> str:
    """The reference the gateway's adapter would have made for this attempt."""
    if gateway == "vnpay":
        return txn_ref(token, created)
    if gateway == "momo":
        return momo_id(MOMO_PREFIX, token)
    return make_reference(REFERENCE_SECRET, token)


def _booked(at: datetime, gateway: str) -> date:
    local = at.astimezone(GMT7)
    return local.date() if local.time() < CUTOFF[gateway] else local.date() + timedelta(days=1)


# --- files from the database ----------------------------------------------------------------------------------------
def write_files(
    db_or_ctx: AppContext | Database,
    agency_code: str,
    day: date,
    out_dir: Path,
    *,
    bank_format: StatementFormat = StatementFormat.camt053,
) -> list[GeneratedFile]:
    """The settlement files that settle an agency's day exactly as the database has it, nothing generated: a VNPay
    and a MoMo line for every payment of the day paid there, a refund line for every refund completed on the day,
    a bank credit for every VietQR payment of the day (its notified bank transaction id when there is one).

    Transaction ids are derived from the payment or refund id, so writing the same day again gives the same lines
    (an overlapping import counts them once). Cut-offs and fees are those of ``generate``."""
    if bank_format not in BANK_FORMATS:
        raise ValueError("the bank statement is mt940 or camt053")
    db = _db(db_or_ctx)
    start, end = day_bounds(day)
    out_dir.mkdir(parents=True, exist_ok=True)
    spools = {source: _Spool() for source in (*GATEWAY_FORMATS, BANK)}
    try:
        with db.read() as s:
            agency_id = s.exec(select(Agency.id).where(Agency.code == agency_code)).first()
            if agency_id is None:
                raise LookupError(f"no agency {agency_code!r}")
            for row in _day_payments(s, agency_id, start, end):
                spools[SOURCE[row[1]]].add(_db_line(*row))
            for row in _day_refunds(s, agency_id, start, end):
                spools[row[1]].add(_db_refund_line(*row))
        stamp = f"{agency_code}-{day:%Y%m%d}"
        files = [_write(out_dir, stamp, g, f, spools[g]) for g, f in GATEWAY_FORMATS.items()]
        files.append(_write(out_dir, stamp, BANK, bank_format, spools[BANK]))
        return files
    finally:
        for spool in spools.values():
            spool.close()


def _day_payments(s: Session, agency_id: str, start: datetime, end: datetime) -> Iterator[tuple[Any, ...]]:
    credit = (
        select(BankCredit.bank_transaction_id)
        .where(BankCredit.payment_id == Payment.id, BankCredit.amount == Payment.amount)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        sa_select(
            col(Payment.id),
            col(Payment.gateway),
            col(Payment.amount),
            col(Payment.gateway_reference),
            col(Payment.succeeded_at),
            credit,
        )
        .where(
            col(Payment.agency_id) == agency_id,
            col(Payment.succeeded_at) >= start,
            col(Payment.succeeded_at) < end,
            col(Payment.status).in_(list(PAID)),
            col(Payment.gateway).in_(list(SOURCE)),
        )
        .order_by(col(Payment.succeeded_at), col(Payment.id))
        .execution_options(yield_per=BATCH)
    )
    yield from s.execute(query)


def _day_refunds(s: Session, agency_id: str, start: datetime, end: datetime) -> Iterator[tuple[Any, ...]]:
    query = (
        sa_select(
            col(Refund.id),
            col(Payment.gateway),
            col(Refund.amount),
            col(Payment.gateway_reference),
            col(Refund.completed_at),
        )
        .join(Payment, col(Payment.id) == Refund.payment_id)
        .where(
            col(Payment.agency_id) == agency_id,
            col(Refund.status) == "succeeded",
            col(Refund.completed_at) >= start,
            col(Refund.completed_at) < end,
            col(Payment.gateway).in_(list(GATEWAY_FORMATS)),
        )
        .order_by(col(Refund.completed_at), col(Refund.id))
        .execution_options(yield_per=BATCH)
    )
    yield from s.execute(query)


def _derived_id(gateway: str, subject: str) -> str:
    number = int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big")
    if gateway == "vietqr":
        return f"FT{number % 10**14:014d}"
    return str(number % 10**15).rjust(15, "0")


def _db_line(
    payment_id: str, gateway: str, amount: int, reference: str, at: datetime, credit_id: str | None
) -> LineRow:
    if gateway == "vietqr":
        booked = _booked(at, gateway)
        ext = credit_id or _derived_id(gateway, payment_id)
        return (ext, "credit", amount, 0, booked, booked, f"CK {reference}", None, "NAPAS 247")
    rate, least = FEES[gateway]
    text = "Thanh toan le phi" if gateway == "vnpay" else "Thanh toán lệ phí"
    counterparty = "NCB" if gateway == "vnpay" else None
    fee = max(least, round(amount * rate))
    return (_derived_id(gateway, payment_id), "payment", amount, fee, _booked(at, gateway), None, reference,
            counterparty, text)  # fmt: skip


def _db_refund_line(refund_id: str, gateway: str, amount: int, reference: str, at: datetime) -> LineRow:
    counterparty = "NCB" if gateway == "vnpay" else None
    booked = _booked(at, gateway)
    return (_derived_id(gateway, refund_id), "refund", -amount, 0, booked, None, reference, counterparty, "Hoan tien")
