"""Statement and settlement file parsing: round trips through the writers, real-world-shaped samples, every error
with its line number, flat memory on large files, and Stripe's balance history.

Stripe: ``stripe_balance_lines`` runs against a real localstripe server, which serves ``/v1/balance_transactions``
(with ``expand[]=data.source``) but rejects ``created[...]`` filters; the test client drops those filters on the way
(the function checks the window itself too). What localstripe does not produce (fees, payouts, another currency,
an error answer, the GMT+7 day boundary) is shown with respx answers shaped like Stripe's documented
balance-transaction object.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import pickle
import re
import time
import tracemalloc
import unicodedata
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import GatewayTechnicalError
from adapters.statements import (
    MOMO_MAPPING,
    VNPAY_MAPPING,
    ZALOPAY_MAPPING,
    ColumnMapping,
    LineKind,
    StatementError,
    StatementFormat,
    StatementLine,
    file_sha256,
    load_mapping,
    parse_file,
    stripe_balance_lines,
)
from adapters.statements.base import GMT7
from adapters.statements.csvfile import date_reader
from adapters.statements.stripe_balance import balance_line
from devtools.statement_writers import write_camt053, write_csv, write_file, write_mt940
from tests.adapters.localstripe_server import LocalStripe, run_localstripe

DATA = Path(__file__).parent / "statements_data"
MAX_AMOUNT = 999_999_999_999
RESPX_API = "https://stripe.test"

# A bank CSV laid out the Vietnamese way: credit/debit columns, "1.150.000,00", title rows and a totals row.
BANK_PAIR = ColumnMapping(
    external_id="Số tham chiếu",
    date="Ngày giao dịch",
    date_format="%d/%m/%Y",
    value_date="Ngày hiệu lực",
    credit="Ghi có",
    debit="Ghi nợ",
    reference="Nội dung",
    counterparty="Tên đối ứng",
    description="Diễn giải",
    decimal_separator=",",
    thousands_separator=".",
    delimiter=";",
    skip_rows=2,
    footer_rows=1,
)
# Excel's "Unicode text": UTF-16, tab-separated; a signed amount, a kind column, a fee, a currency column.
BANK_SIGNED = ColumnMapping(
    external_id="Ref",
    date="Booked at",
    date_format="%Y-%m-%dT%H:%M:%S%z",
    amount="Amount",
    kind="Type",
    kind_values={"GHI CO": LineKind.credit, "GHI NO": LineKind.debit, "PHI": LineKind.fee},
    fee="Fee",
    currency="Ccy",
    reference="Memo",
    description="Details",
    delimiter="\t",
    encoding="utf-16",
)


# --- strategies ----------------------------------------------------------------------------------------------------
VIETNAMESE = "aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ"
# Formula starters, separators and what MT940 and XML treat specially, so that they are written and read as data.
SPECIAL = "0123456789 .,;-/:=+@()\"'&<>{}%#?!_|$\\"
TEXT_CHARS = st.one_of(
    st.sampled_from(VIETNAMESE + VIETNAMESE.upper() + SPECIAL),
    st.characters(exclude_categories=("Cc", "Cs", "Cn", "Zl", "Zp")),
)


def texts(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Text as readers give it back: no control characters, no spaces at either end."""
    return st.text(TEXT_CHARS, min_size=min_size, max_size=max_size).map(str.strip).filter(lambda t: len(t) >= min_size)


def days(start: int = 2000, end: int = 2099) -> st.SearchStrategy[date]:
    return st.dates(date(start, 1, 1), date(end, 12, 31))


@st.composite
def bank_lines(draw: st.DrawFn, *, mt940: bool = False) -> StatementLine:
    kind = draw(st.sampled_from([LineKind.credit, LineKind.debit]))
    magnitude = draw(st.integers(0, MAX_AMOUNT))
    if mt940:
        value_on = draw(days(2000, 2098).filter(lambda d: d >= date(2000, 7, 1)))
        booked_on = value_on + timedelta(days=draw(st.integers(-180, 180)))
        external_id = draw(st.from_regex(r"[!-~](?:[ -~]{0,14}[!-~])?", fullmatch=True))
        reference = draw(texts(390))
        description = draw(texts(34).filter(lambda d: not re.match(r":(?:[0-9]{2}[A-Z]?|NS):|-$|-\}", d)))
        counterparty = None
    else:
        booked_on = draw(days(1900))
        value_on = draw(st.none() | days(1900))
        external_id = draw(texts(35, min_size=1))
        reference = draw(texts(400))
        description = draw(texts(500))
        counterparty = draw(st.none() | texts(140, min_size=1))
    return StatementLine(
        source_line=0,
        external_id=external_id,
        kind=kind,
        amount=magnitude if kind is LineKind.credit else -magnitude,
        booked_on=booked_on,
        value_on=value_on,
        reference=reference,
        counterparty=counterparty,
        description=description,
    )


@st.composite
def csv_lines(draw: st.DrawFn, mapping: ColumnMapping) -> StatementLine:
    """Lines the mapping can carry: only its columns, its kinds with their signs."""
    if mapping.kind is None:
        kind = draw(st.sampled_from([LineKind.credit, LineKind.debit]))
        magnitude = draw(st.integers(0, MAX_AMOUNT))
        amount = magnitude if kind is LineKind.credit else -magnitude
    else:
        kinds = sorted(set(mapping.kind_values.values()) | ({LineKind.other} if mapping is BANK_SIGNED else set()))
        kind = draw(st.sampled_from(kinds))
        amount = draw(st.integers(-MAX_AMOUNT, 0 if kind in mapping.negative_kinds else MAX_AMOUNT))
    epoch = mapping.date_format in ("unix", "unix_ms")
    return StatementLine(
        source_line=0,
        external_id=draw(texts(40, min_size=1)),
        kind=kind,
        amount=amount,
        fee=draw(st.integers(-(10**9), 10**9)) if mapping.fee else 0,
        booked_on=draw(days(1971 if epoch else 1900)),
        value_on=draw(st.none() | days(1900)) if mapping.value_date else None,
        reference=draw(texts(80)) if mapping.reference else "",
        counterparty=draw(st.none() | texts(60, min_size=1)) if mapping.counterparty else None,
        description=draw(texts(120)) if mapping.description else "",
    )


# --- helpers -------------------------------------------------------------------------------------------------------
def write_bytes(writer: Callable[[io.TextIOWrapper], object], encoding: str = "utf-8") -> io.BytesIO:
    buffer = io.BytesIO()
    text = io.TextIOWrapper(buffer, encoding=encoding, newline="")
    writer(text)
    text.flush()
    text.detach()
    buffer.seek(0)
    return buffer


def read_back(source: io.BytesIO, fmt: StatementFormat, mapping: ColumnMapping | None = None) -> list[StatementLine]:
    parsed = list(parse_file(source, fmt, mapping))
    numbers = [line.source_line for line in parsed]
    assert numbers == sorted(numbers)
    assert all(n >= 1 for n in numbers)
    return [dataclasses.replace(line, source_line=0) for line in parsed]


def parse_bytes(data: bytes, fmt: StatementFormat, mapping: ColumnMapping | None = None) -> list[StatementLine]:
    return list(parse_file(io.BytesIO(data), fmt, mapping))


def failure(data: bytes, fmt: StatementFormat, mapping: ColumnMapping | None = None) -> StatementError:
    with pytest.raises(StatementError) as info:
        parse_bytes(data, fmt, mapping)
    return info.value


def make_line(**fields: Any) -> StatementLine:
    defaults: dict[str, Any] = {
        "source_line": 0,
        "external_id": "FT1",
        "kind": LineKind.credit,
        "amount": 150_000,
        "booked_on": date(2025, 1, 1),
        "value_on": date(2025, 1, 1),
    }
    return StatementLine(**{**defaults, **fields})


ROUND_TRIP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- round trips ---------------------------------------------------------------------------------------------------
@ROUND_TRIP
@given(st.lists(bank_lines(mt940=True), max_size=12), st.booleans())
def test_mt940_round_trip(lines: list[StatementLine], swift_blocks: bool) -> None:
    source = write_bytes(lambda out: write_mt940(lines, out, swift_blocks=swift_blocks))
    assert read_back(source, StatementFormat.mt940) == lines


CAMT_VERSIONS: list[Literal["02", "08"]] = ["02", "08"]


@ROUND_TRIP
@given(st.lists(bank_lines(), max_size=12), st.sampled_from(CAMT_VERSIONS))
def test_camt053_round_trip(lines: list[StatementLine], version: Literal["02", "08"]) -> None:
    source = write_bytes(lambda out: write_camt053(lines, out, version=version))
    assert read_back(source, StatementFormat.camt053) == lines


@pytest.mark.parametrize("mapping", [BANK_PAIR, BANK_SIGNED], ids=["credit-debit", "signed-utf16"])
@ROUND_TRIP
@given(data=st.data())
def test_bank_csv_round_trip(mapping: ColumnMapping, data: st.DataObject) -> None:
    lines = data.draw(st.lists(csv_lines(mapping), max_size=12))
    source = write_bytes(lambda out: write_csv(lines, out, mapping), mapping.encoding)
    assert read_back(source, StatementFormat.bank_csv, mapping) == lines


@pytest.mark.parametrize(
    ("fmt", "mapping"),
    [
        (StatementFormat.vnpay_csv, VNPAY_MAPPING),
        (StatementFormat.momo_csv, MOMO_MAPPING),
        (StatementFormat.zalopay_csv, ZALOPAY_MAPPING),
    ],
)
@ROUND_TRIP
@given(data=st.data())
def test_gateway_csv_round_trip(fmt: StatementFormat, mapping: ColumnMapping, data: st.DataObject) -> None:
    lines = data.draw(st.lists(csv_lines(mapping), max_size=12))
    source = write_bytes(lambda out: write_csv(lines, out, mapping), mapping.encoding)
    assert read_back(source, fmt) == lines


@pytest.mark.parametrize(
    ("fmt", "mapping"),
    [
        (StatementFormat.mt940, None),
        (StatementFormat.camt053, None),
        (StatementFormat.bank_csv, BANK_PAIR),
        (StatementFormat.vnpay_csv, None),
        (StatementFormat.momo_csv, None),
        (StatementFormat.zalopay_csv, None),
    ],
)
def test_write_file_then_parse_file(tmp_path: Path, fmt: StatementFormat, mapping: ColumnMapping | None) -> None:
    bank = fmt in (StatementFormat.mt940, StatementFormat.camt053, StatementFormat.bank_csv)
    lines = [
        make_line(
            external_id=f"FT{i:05d}",
            kind=LineKind.credit if bank else LineKind.payment,
            amount=150_000 * (i + 1),
            value_on=date(2025, 1, 1) if bank else None,
            reference=f"LP3X7KQ9ABCDE{i}",
        )
        for i in range(3)
    ]
    path = tmp_path / f"lines.{fmt}"
    assert write_file(path, fmt, iter(lines), mapping) == 3
    assert [dataclasses.replace(x, source_line=0) for x in parse_file(path, fmt, mapping)] == lines


def test_formula_looking_text_is_kept_as_data() -> None:
    formulas = ['=HYPERLINK("http://example.test/x","Bấm vào đây")', "+84912345678", "-1+2", "@SUM(A1:A9)"]
    bank = [make_line(external_id=f"FT{i}", reference=f, description=f[:34]) for i, f in enumerate(formulas)]
    camt = [dataclasses.replace(x, counterparty=x.reference) for x in bank]
    gateway = [
        make_line(external_id=f"{i}", kind=LineKind.payment, value_on=None, reference=f, counterparty=f, description=f)
        for i, f in enumerate(formulas)
    ]
    assert read_back(write_bytes(lambda out: write_mt940(bank, out)), StatementFormat.mt940) == bank
    assert read_back(write_bytes(lambda out: write_camt053(camt, out)), StatementFormat.camt053) == camt
    vnpay = write_bytes(lambda out: write_csv(gateway, out, VNPAY_MAPPING), VNPAY_MAPPING.encoding)
    assert read_back(vnpay, StatementFormat.vnpay_csv) == gateway
    # Written as is too: guarding spreadsheets against formulas is the exporter's job.
    assert b'"=HYPERLINK(""http://example.test/x""' in vnpay.getvalue()


# --- real-world-shaped samples -------------------------------------------------------------------------------------
def test_mt940_sample_with_swift_blocks_and_multiline_details() -> None:
    lines = list(parse_file(DATA / "vcb_blocks.mt940", StatementFormat.mt940))
    assert lines == [
        StatementLine(
            source_line=6,
            external_id="FT25001123456",
            kind=LineKind.credit,
            amount=150_000,
            booked_on=date(2025, 1, 1),  # entry date 0101 after a value date of 31/12/2024: the next year
            value_on=date(2024, 12, 31),
            reference="NGUYEN VAN A chuyen tien LP3X7KQ9ABCDEF LE PHI HO SO HS000123 - NOP QUA VCB DIGIBANK",
            description="CK DEN TU NGUYEN VAN A",
        ),
        StatementLine(
            source_line=10,
            external_id="FT25001123457",
            kind=LineKind.debit,
            amount=-11_000,
            booked_on=date(2025, 1, 1),
            value_on=date(2025, 1, 1),
            reference="PHI QUAN LY TAI KHOAN THANG 12/2024",
        ),
        StatementLine(  # RC: the reversal of a credit takes the money back
            source_line=12,
            external_id="FT25001123458",
            kind=LineKind.debit,
            amount=-150_000,
            booked_on=date(2025, 1, 2),
            value_on=date(2025, 1, 2),
            reference="HOAN TRA GD FT25001123456",
        ),
        StatementLine(  # no bank reference: the id comes from :20:, :28C: and the position
            source_line=23,
            external_id="VCB250102001/00002/001/1",
            kind=LineKind.credit,
            amount=2_000_000,
            booked_on=date(2025, 1, 2),
            value_on=date(2025, 1, 2),
            reference="TRAN THI B NOP LE PHI CAP GIAY PHEP XAY DUNG",
        ),
    ]


def test_mt940_without_blocks_several_statements_and_header_words() -> None:
    text = (
        "ABNANL2A\n940\nABNANL2A\n"
        ":20:S1\n:25:123\n:28C:1\n:60F:C250101VND0,\n:61:250101C5,NTRFREF-CUSTOMER\n:62F:C250101VND5,\n"
        ":20:S2\n:25:123\n:28C:2\n:60M:C250101VND5,\n:61:250101D5,NTRFNONREF//B2\n:62M:C250101VND0,\n-\n"
    )
    lines = parse_bytes(text.encode(), StatementFormat.mt940)
    assert [(x.source_line, x.external_id, x.amount, x.reference) for x in lines] == [
        (8, "S1/1/1", 5, "REF-CUSTOMER"),  # no :86:: the customer reference is the reference
        (14, "B2", -5, ""),  # NONREF is no reference
    ]


def test_camt053_v02_sample() -> None:
    lines = list(parse_file(DATA / "camt053_v02.xml", StatementFormat.camt053))
    assert lines == [
        StatementLine(
            source_line=66,
            external_id="BIDV25001000123",
            kind=LineKind.credit,
            amount=150_000,
            booked_on=date(2025, 1, 1),
            value_on=date(2025, 1, 1),
            reference="NGUYEN VAN AN chuyen tien LP3X7KQ9ABCDEF LE PHI HO SO HS000123",  # two Ustrd, joined
            counterparty="NGUYỄN VĂN AN",
            description="Chuyển khoản liên ngân hàng",
        ),
        StatementLine(
            source_line=123,
            external_id="FEE-202412",
            kind=LineKind.debit,
            amount=-11_000,
            booked_on=date(2025, 1, 2),  # 23:30 UTC is already the next day in GMT+7
            counterparty="BIDV",
            description="PHI QUAN LY TAI KHOAN THANG 12/2024",
        ),
        # the pending entry is left out
        StatementLine(
            source_line=159,
            external_id="STMT-20250101-0011001234567/4",
            kind=LineKind.credit,
            amount=50_000,
            booked_on=date(2025, 1, 1),
            reference="LP7Q2M9K4D8H3X",  # a structured creditor reference when there is no free text
        ),
    ]


def test_camt053_v08_sample() -> None:
    lines = list(parse_file(DATA / "camt053_v08.xml", StatementFormat.camt053))
    assert lines == [
        StatementLine(
            source_line=31,
            external_id="VTB2501020000777",
            kind=LineKind.credit,
            amount=1_200_000,
            booked_on=date(2025, 1, 2),
            value_on=date(2025, 1, 2),
            reference="CONG TY DONG A NOP LE PHI LP9H4K2M7QXYZT",
            counterparty="CÔNG TY TNHH XÂY DỰNG ĐÔNG Á",
        ),
        StatementLine(  # a reversal is signed by its own CdtDbtInd; TxId, not the repeated EndToEndId, is its id
            source_line=72,
            external_id="VTB-RVSL-0001",
            kind=LineKind.debit,
            amount=-1_200_000,
            booked_on=date(2025, 1, 2),
            counterparty="CÔNG TY TNHH XÂY DỰNG ĐÔNG Á",
            description="Hoàn trả giao dịch trùng",
        ),
    ]


def test_bank_csv_sample_with_a_mapping_file() -> None:
    mapping = load_mapping(DATA / "bank_mapping.toml", "vcb")
    lines = list(parse_file(DATA / "vcb_export.csv", StatementFormat.bank_csv, mapping))
    assert [(x.source_line, x.external_id, x.kind, x.amount, x.value_on) for x in lines] == [
        (5, "5213.20250101.0001", LineKind.credit, 150_000, date(2025, 1, 1)),
        (6, "5213.20250101.0002", LineKind.debit, -11_000, date(2025, 1, 1)),
        (7, "5213.20250102.0001", LineKind.credit, 1_200_000, date(2025, 1, 2)),  # its memo runs over two lines
        (9, "5213.20250102.0002", LineKind.credit, 50_000, None),
    ]
    assert lines[0].counterparty == "NGUYỄN VĂN AN"
    assert lines[1].counterparty is None
    assert lines[2].reference == "CONG TY DONG A NOP LE PHI\r\nLP9H4K2M7QXYZT"  # as printed
    assert lines[3].counterparty == "Trần, Thị B"
    assert lines[3].reference == '=HYPERLINK("http://example.test/x","Bấm vào đây")'


def test_vnpay_sample_with_the_default_mapping() -> None:
    lines = list(parse_file(DATA / "vnpay_export.csv", StatementFormat.vnpay_csv))
    assert [(x.external_id, x.kind, x.amount, x.fee, x.booked_on, x.counterparty) for x in lines] == [
        ("14712345", LineKind.payment, 150_000, 1_650, date(2025, 1, 1), "NCB"),
        ("14712399", LineKind.refund, -50_000, 0, date(2025, 1, 1), "NCB"),  # printed unsigned, read negative
        ("14712400", LineKind.payment, 1_200_000, 13_200, date(2025, 1, 2), "VCB"),
    ]
    assert lines[0].reference == "ABCDEFGHIJKLMNOPQRST20250101090000"


def test_a_mapping_file_can_extend_a_default_layout() -> None:
    renamed = load_mapping(DATA / "bank_mapping.toml", "vnpay_renamed")
    assert renamed == dataclasses.replace(VNPAY_MAPPING, amount="Số tiền giao dịch")
    text = (DATA / "vnpay_export.csv").read_text(encoding="utf-8-sig").replace("Số tiền,", "Số tiền giao dịch,", 1)
    lines = parse_bytes(text.encode(), StatementFormat.vnpay_csv, renamed)
    assert [x.amount for x in lines] == [150_000, -50_000, 1_200_000]


# --- mapping configuration -----------------------------------------------------------------------------------------
def test_headers_match_whatever_their_case_spacing_or_unicode_form() -> None:
    header = unicodedata.normalize("NFD", " MÃ GD VNPAY ,mã tham chiếu,NGÀY GD,Loại GD,Số Tiền,phí,Ngân hàng,Nội dung")
    text = header + '\n1,R1,01/01/2025 10:00:00,THANH TOÁN,"1,000",0,NCB,x\n'
    assert [x.amount for x in parse_bytes(text.encode(), StatementFormat.vnpay_csv)] == [1000]


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"external_id": "a", "date": "b"}, "either 'amount' or both"),
        ({"external_id": "a", "date": "b", "amount": "c", "credit": "d", "debit": "e"}, "either 'amount' or both"),
        ({"external_id": "a", "date": "b", "credit": "d"}, "go together"),
        ({"external_id": "a", "date": "b", "amount": "A"}, "one column cannot hold two fields"),
        ({"external_id": "a", "date": "b", "amount": "c", "thousands_separator": "."}, "must differ"),
        ({"external_id": "a", "date": "b", "amount": "c", "encoding": "no-such-codec"}, "unknown encoding"),
        ({"external_id": "a", "date": "b", "amount": "c", "amout": "d"}, "unknown column mapping keys"),
        ({"external_id": "a", "date": "b", "amount": "c", "kind_values": {"X": "payement"}}, "payement"),
        ({"external_id": "a", "date": "b", "amount": "c", "skip_rows": "2"}, "whole numbers"),
        ({"external_id": "a", "date": 1, "amount": "c"}, "are strings"),
    ],
)
def test_bad_mappings_are_refused_when_loaded(table: dict[str, Any], problem: str) -> None:
    with pytest.raises((ValueError, LookupError), match=problem):
        ColumnMapping.from_dict(table)


def test_a_mapping_pickles_for_import_workers() -> None:
    assert pickle.loads(pickle.dumps(VNPAY_MAPPING)) == VNPAY_MAPPING


def test_load_mapping_refuses_an_unknown_parent(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('extends = "paypal"\namount = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="'extends' must be one of"):
        load_mapping(path)


@pytest.mark.parametrize(
    ("fmt", "text", "day"),
    [
        ("%Y-%m-%dT%H:%M:%S%z", "2025-01-01T23:30:00+00:00", date(2025, 1, 2)),  # offsets move to GMT+7
        ("%Y-%m-%dT%H:%M:%S%z", "2025-01-02T06:59:59+07:00", date(2025, 1, 2)),
        ("%Y-%m-%d %H:%M:%S%z", "2025-01-01 16:59:59Z", date(2025, 1, 1)),
        ("%d/%m/%y", "31/12/24", date(2024, 12, 31)),
        ("%d-%b-%Y", "01-Jan-2025", date(2025, 1, 1)),  # not compiled: strptime reads it
        ("unix", "1735750800", date(2025, 1, 2)),  # 2025-01-01T17:00:00Z
        ("unix_ms", "1735750799999", date(2025, 1, 1)),
    ],
)
def test_date_formats(fmt: str, text: str, day: date) -> None:
    assert date_reader(fmt)(text) == day


# --- errors --------------------------------------------------------------------------------------------------------
VNPAY_HEADER = "Mã GD VNPAY,Mã tham chiếu,Ngày GD,Loại GD,Số tiền,Phí,Ngân hàng,Nội dung\n"
VNPAY_ROW = '1,R1,01/01/2025 10:00:00,Thanh toán,"150,000",0,NCB,x\n'


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,R1,01/01/2025 10:00:00,Thanh toán,abc,0,NCB,x\n", "amount 'abc' in column 'Số tiền' is not a number"),
        (
            "1,R1,01/01/2025 10:00:00,Thanh toán,150000.50,0,NCB,x\n",
            "amount '150000.50' in column 'Số tiền' has a fraction of a đồng",
        ),
        ('1,R1,01/01/2025 10:00:00,Thanh toán,"150,000.00",0,NCB,x\n', None),  # zero fraction: fine
        ('1,R1,01/01/2025 10:00:00,Thanh toán,"1,50,000",0,NCB,x\n', "misplaced thousands separators"),
        ("1,R1,01/01/2025 10:00:00,Thanh toán,150.000,0,NCB,x\n", "3 digits after the decimal separator"),
        ("1,R1,01/01/2025 10:00:00,Thanh toán,1,1.5,NCB,x\n", "fee '1.5' in column 'Phí' has a fraction"),
        (
            "1,R1,31/02/2025 10:00:00,Thanh toán,1,0,NCB,x\n",
            "date '31/02/2025 10:00:00' in column 'Ngày GD' is not a date in the format '%d/%m/%Y %H:%M:%S'",
        ),
        ("1,R1,01/01/2025 24:00:00,Thanh toán,1,0,NCB,x\n", "is not a date"),
        ("1,R1,01/01/2025 10:00:00,Chuyển khoản,1,0,NCB,x\n", "kind 'Chuyển khoản' in column 'Loại GD' is not one of"),
        (",R1,01/01/2025 10:00:00,Thanh toán,1,0,NCB,x\n", "column 'Mã GD VNPAY' (external_id) is empty"),
        ("1,R1,01/01/2025 10:00:00\n", "the row has 3 fields, the mapping needs 8"),
        ('1,R1,01/01/2025 10:00:00,Thanh toán,"1,0,NCB,x\n', "malformed CSV"),
    ],
)
def test_csv_row_errors_name_the_line_and_column(row: str, message: str | None) -> None:
    data = (VNPAY_HEADER + VNPAY_ROW + row + VNPAY_ROW).encode()
    if message is None:
        assert len(parse_bytes(data, StatementFormat.vnpay_csv)) == 3
        return
    error = failure(data, StatementFormat.vnpay_csv)
    assert error.line == 3
    assert message in error.message
    assert str(error) == f"line 3: {error.message}"


def test_csv_other_currency_is_refused() -> None:
    data = "Ref\tBooked at\tAmount\tType\tFee\tCcy\tMemo\tDetails\nA\t2025-01-01T10:00:00+07:00\t5\tPHI\t0\tUSD\t\t\n"
    error = failure(data.encode("utf-16"), StatementFormat.bank_csv, BANK_SIGNED)
    assert (error.line, error.message) == (2, "currency 'USD' in column 'Ccy' is not VND: only VND lines are accepted")


def test_csv_credit_and_debit_both_given() -> None:
    data = "t1\nt2\nNgày giao dịch;Ngày hiệu lực;Số tham chiếu;Ghi có;Ghi nợ;Nội dung;Tên đối ứng;Diễn giải\n"
    data += "01/01/2025;;A;5;6;;;\nTổng cộng;;;5;6;;;\n"
    error = failure(data.encode(), StatementFormat.bank_csv, BANK_PAIR)
    assert (error.line, error.message) == (4, "both 'Ghi có' and 'Ghi nợ' have an amount")


def test_csv_header_missing_a_mapped_column_fails_at_the_header_line() -> None:
    data = "title\n\nNgày giao dịch;Số tham chiếu;Ghi có;Ghi nợ;Nội dung;Tên đối ứng;Diễn giải\n01/01/2025;A;5;;;;\n"
    error = failure(data.encode(), StatementFormat.bank_csv, BANK_PAIR)
    assert error.line == 3
    assert error.message.startswith("column 'Ngày hiệu lực' (value_date) is not in the header; found 'Ngày giao dịch'")


def test_csv_that_is_not_valid_text_fails_at_its_line() -> None:
    data = (VNPAY_HEADER + VNPAY_ROW * 2000).encode() + b"1,R1,\xff\xfe,x\n" + VNPAY_ROW.encode()
    error = failure(data, StatementFormat.vnpay_csv)
    assert (error.line, error.message) == (2002, "the file is not valid utf-8-sig text")


MT940_HEAD = ":20:S1\n:25:123\n:28C:1\n:60F:C250101VND0,\n"


@pytest.mark.parametrize(
    ("text", "line_no", "message"),
    [
        (":20:S1\n:25:123\n:61:250101C5,NTRFNONREF//A\n:62F:C250101VND5,\n", 3, "has no opening balance :60F:"),
        (MT940_HEAD + ":61:250101C15O,NTRFNONREF//A\n:62F:C250101VND5,\n", 5, "malformed :61: statement line"),
        (MT940_HEAD + ":61:250101C5,50NTRFNONREF//A\n:62F:C250101VND5,\n", 5, "has a fraction of a đồng"),
        (MT940_HEAD + ":61:251301C5,NTRFNONREF//A\n:62F:C250101VND5,\n", 5, "value date 251301 is not a date"),
        (MT940_HEAD + ":61:2501011332C5,NTRFNONREF//A\n:62F:C250101VND5,\n", 5, "entry date 1332 is not a date"),
        (":20:S1\n:60F:C250101USD0,\n", 2, "currency 'USD' is not VND"),
        (":20:S1\n:60F:C250101VND0,5\n", 2, ":60F: amount '0,5' has a fraction of a đồng"),
        (":20:S1\n:60F:XYZ\n", 2, "malformed :60F: balance"),
        (MT940_HEAD + ":61:250101C5,NTRFNONREF//A\n:62F:C250101VND6,\n", 6, "is not its opening balance 0 plus"),
        (MT940_HEAD + ":61:250101C5,NTRFNONREF//A\n:86:x\n", 6, "the file ends inside statement 'S1'"),
        (MT940_HEAD + ":61:250101C5,NTRFNONREF//A\n-\n", 6, "end of statement 'S1' (opened at line 1) before"),
        ("Date,Amount\n2025-01-01,5\n", 1, "expected ':20:' to start a statement, found 'Date,Amount'"),
        (MT940_HEAD + ":61:250101C5,NTRFNONREF//A\n:86:caf\xe9\n", 6, "the line is not valid utf-8 text"),
    ],
)
def test_mt940_errors_name_the_line(text: str, line_no: int, message: str) -> None:
    data = text.encode("latin-1") if "\xe9" in text else text.encode()
    error = failure(data, StatementFormat.mt940)
    assert error.line == line_no
    assert message in error.message


CAMT_HEAD = '<?xml version="1.0"?>\n<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>\n'
CAMT_STMT = "<Stmt><Id>S</Id>\n"


def camt(entry: str) -> bytes:
    return (CAMT_HEAD + CAMT_STMT + entry + "\n</Stmt></BkToCstmrStmt></Document>\n").encode()


def ntry(amount: str = '<Amt Ccy="VND">5</Amt>', day: str = "2025-01-01", indicator: str = "CRDT") -> str:
    return f"<Ntry>{amount}<CdtDbtInd>{indicator}</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>{day}</Dt></BookgDt></Ntry>"


@pytest.mark.parametrize(
    ("data", "line_no", "message"),
    [
        (camt(ntry('<Amt Ccy="USD">5</Amt>')), 4, "currency 'USD' is not VND"),
        (camt(ntry('<Amt Ccy="VND">150000.50</Amt>')), 4, "Amt '150000.50' has a fraction of a đồng"),
        (camt(ntry('<Amt Ccy="VND">1e5</Amt>')), 4, "Amt '1e5' is not a number"),
        (camt(ntry(day="2025-02-30")), 4, "BookgDt '2025-02-30' is not an ISO date"),
        (camt(ntry(indicator="CRED")), 4, "CdtDbtInd 'CRED' is neither CRDT nor DBIT"),
        (camt("<Ntry><CdtDbtInd>CRDT</CdtDbtInd></Ntry>"), 4, "the entry has no Amt"),
        (
            camt(ntry()).replace(b"</Stmt></BkToCstmrStmt></Document>\n", b"</Stmt><Stmt><Ntry><Amt"),
            5,
            "not well-formed",
        ),
        (camt(ntry() + "\n<Ntry>"), 6, "not well-formed"),
        (
            b'<?xml version="1.0"?>\n<Document><BkToCstmrDbtCdtNtfctn><Ntfctn>\n' + ntry().encode() + b"\n</Ntfctn>"
            b"</BkToCstmrDbtCdtNtfctn></Document>",
            3,
            "not a camt.053 statement: Ntry outside BkToCstmrStmt/Stmt",
        ),
        (b"<Document><Other/></Document>", 1, "not a camt.053 statement: no BkToCstmrStmt element"),
    ],
)
def test_camt053_errors_name_the_line(data: bytes, line_no: int, message: str) -> None:
    error = failure(data, StatementFormat.camt053)
    assert error.line == line_no
    assert message in error.message


def test_camt053_refuses_a_doctype_and_never_reads_external_entities(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE", encoding="utf-8")
    xxe = (
        f'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        '<Document><BkToCstmrStmt><Stmt><Id>S</Id><Ntry><Amt Ccy="VND">5</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        "<BookgDt><Dt>2025-01-01</Dt></BookgDt><AddtlNtryInf>&xxe;</AddtlNtryInf></Ntry></Stmt></BkToCstmrStmt>"
        "</Document>"
    )
    error = failure(xxe.encode(), StatementFormat.camt053)
    assert "DOCTYPE is not accepted" in error.message
    assert "TOP-SECRET" not in str(error)


def test_camt053_refuses_entity_expansion_quickly() -> None:
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e0 "lol">{entities}]><Document>&e9;</Document>'
    started = time.perf_counter()
    error = failure(bomb.encode(), StatementFormat.camt053)
    assert "DOCTYPE is not accepted" in error.message
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("fmt", [f for f in StatementFormat if f is not StatementFormat.stripe_api])
@pytest.mark.parametrize("data", [b"", b"\r\n  \n", b"\xef\xbb\xbf"], ids=["empty", "blank", "bom"])
def test_an_empty_file_has_no_lines(fmt: StatementFormat, data: bytes) -> None:
    mapping = BANK_PAIR if fmt is StatementFormat.bank_csv else None
    assert parse_bytes(data, fmt, mapping) == []


def test_a_csv_with_only_a_header_has_no_lines() -> None:
    assert parse_bytes(VNPAY_HEADER.encode(), StatementFormat.vnpay_csv) == []


def test_parse_file_needs_a_mapping_for_bank_csv_and_a_file_format() -> None:
    with pytest.raises(ValueError, match="needs a column mapping"):
        parse_file(io.BytesIO(b""), StatementFormat.bank_csv)
    with pytest.raises(ValueError, match="not a file format"):
        parse_file(io.BytesIO(b""), StatementFormat.stripe_api)
    with pytest.raises(ValueError, match="not a file format"):
        write_file(Path("/nonexistent/never-written"), StatementFormat.stripe_api, [])


def test_statement_error_text_and_pickling() -> None:
    error = StatementError("amount 'abc' is not a number", 17)
    assert str(error) == "line 17: amount 'abc' is not a number"
    assert str(StatementError("a DOCTYPE is not accepted")) == "a DOCTYPE is not accepted"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.message, str(copy)) == (17, error.message, str(error))
    assert isinstance(error, ValueError)


SIGNED_NO_KIND = ColumnMapping(external_id="Ref", date="Date", amount="Amount")


@pytest.mark.parametrize(
    ("write", "bad", "problem"),
    [
        ("mt940", make_line(fee=5), "no fee field"),
        ("mt940", make_line(currency="USD"), "in VND"),
        ("mt940", make_line(kind=LineKind.payment), "credits or debits"),
        ("mt940", make_line(amount=-5), "read back with the other sign"),
        ("mt940", make_line(value_on=None), "needs its value date"),
        ("mt940", make_line(external_id="FT-" + "9" * 20), "1..16 printable ASCII"),
        ("mt940", make_line(counterparty="A"), "no counterparty field"),
        ("mt940", make_line(description=":61:x"), "would read as an MT940 tag"),
        ("mt940", make_line(reference="x\ny"), "control characters or line breaks"),
        ("mt940", make_line(reference=" x"), "spaces at either end"),
        ("camt", make_line(counterparty=""), "empty counterparty"),
        ("camt", make_line(external_id="x" * 36), "longer than 35"),
        ("vnpay", make_line(kind=LineKind.refund, amount=5, value_on=None), "is read back negative"),
        ("vnpay", make_line(kind=LineKind.payment), "no column for value_date"),
        ("momo", make_line(kind=LineKind.payment, value_on=None, counterparty="A"), "no column for counterparty"),
        ("bank", make_line(kind=LineKind.debit, amount=0, value_on=None), "zero debit reads back as a credit"),
        ("bank", make_line(kind=LineKind.fee, amount=-5, value_on=None, booked_on=date(1, 1, 1)), "cannot carry"),
    ],
)
def test_writers_refuse_lines_that_would_not_read_back_equal(write: str, bad: StatementLine, problem: str) -> None:
    writers: dict[str, Callable[[list[StatementLine], io.TextIOWrapper], object]] = {  # by name: ids stay readable
        "mt940": write_mt940,
        "camt": write_camt053,
        "vnpay": lambda lines, out: write_csv(lines, out, VNPAY_MAPPING),
        "momo": lambda lines, out: write_csv(lines, out, MOMO_MAPPING),
        "bank": lambda lines, out: write_csv(lines, out, BANK_SIGNED if bad.kind is LineKind.fee else SIGNED_NO_KIND),
    }
    with pytest.raises(ValueError, match=problem):
        write_bytes(lambda out: writers[write]([bad], out))


# --- streaming -----------------------------------------------------------------------------------------------------
def generated(count: int, *, bank: bool) -> Iterator[StatementLine]:
    """Lines made one at a time, so that writing a large file costs no memory either."""
    for i in range(count):
        day = date(2025, 1, 1) + timedelta(days=i // 20_000)
        amount = (150_000 + i % 7 * 10_000) * (1 if i % 10 else -1)
        kind = (LineKind.credit if amount > 0 else LineKind.debit) if bank else LineKind.payment
        yield StatementLine(
            source_line=0,
            external_id=f"FT{i:011d}",
            kind=kind if bank or amount > 0 else LineKind.refund,
            amount=amount,
            fee=0 if bank else 1_650,
            booked_on=day,
            value_on=day if bank else None,
            reference=f"CK LP3X7KQ9ABC{i % 10} LE PHI HO SO HS{i:06d} chuyển tiền",
            description="Chuyển khoản đến",
        )


# Lines per file. tracemalloc slows parsing about five times, so the largest file goes to the fastest parser; every
# size is far beyond what the peak limit could hold if lines were kept (a line costs several hundred bytes).
STREAMED = {
    StatementFormat.momo_csv: 200_000,
    StatementFormat.mt940: 60_000,
    StatementFormat.vnpay_csv: 40_000,
    StatementFormat.camt053: 25_000,
}
PEAK_LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> dict[StatementFormat, Path]:
    folder = tmp_path_factory.mktemp("big")
    files = {}
    for fmt, count in STREAMED.items():
        files[fmt] = folder / f"big.{fmt}"
        bank = fmt in (StatementFormat.mt940, StatementFormat.camt053)
        assert write_file(files[fmt], fmt, generated(count, bank=bank)) == count
    return files


@pytest.mark.parametrize("fmt", list(STREAMED))
def test_parsing_a_large_file_keeps_memory_flat(big_files: dict[StatementFormat, Path], fmt: StatementFormat) -> None:
    path = big_files[fmt]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        counted = collections.Counter(line.kind for line in parse_file(path, fmt))
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert sum(counted.values()) == STREAMED[fmt]
    assert peak < PEAK_LIMIT, f"{fmt}: peak {peak} bytes for a {path.stat().st_size} byte file"


def test_camt053_memory_outside_python_stays_flat_too(big_files: dict[StatementFormat, Path]) -> None:
    """libxml2 allocates outside tracemalloc's sight: the process size must not grow with the file either."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("needs Linux /proc to read the process size")
    path = big_files[StatementFormat.camt053]

    def resident() -> int:
        return int(statm.read_text().split()[1]) * 4096

    start, highest = resident(), 0
    for i, _ in enumerate(parse_file(path, StatementFormat.camt053)):
        if i % 2_000 == 0:
            highest = max(highest, resident() - start)
    assert highest < path.stat().st_size // 2, f"grew by {highest} bytes reading a {path.stat().st_size} byte file"


def test_file_sha256_streams_and_is_stable(tmp_path: Path) -> None:
    data = hashlib.sha256(b"seed").digest() * 100_000  # 3.2 MB, many read chunks
    path = tmp_path / "statement.mt940"
    path.write_bytes(data)
    digest = file_sha256(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == digest
    path.write_bytes(data[:-1] + b"x")
    assert file_sha256(path) != digest


# --- Stripe balance transactions -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    with run_localstripe() as server:
        yield server


class WithoutCreatedFilter(httpx.BaseTransport):
    """Forwards to localstripe without the ``created[...]`` filters it rejects; remembers what was asked."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.asked: list[httpx.URL] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request.url)
        kept = [(k, v) for k, v in request.url.params.multi_items() if not k.startswith("created[")]
        url = request.url.copy_with(params=kept)
        forwarded = httpx.Request(request.method, url, headers=request.headers, content=request.read())
        return self.inner.handle_request(forwarded)


def stripe_post(client: httpx.Client, path: str, form: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def paid_intent(client: httpx.Client, amount: int) -> str:
    card = {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12", "card[exp_year]": "2034"}
    method = stripe_post(client, "/v1/payment_methods", {**card, "card[cvc]": "123"})
    intent = stripe_post(client, "/v1/payment_intents", {"amount": amount, "currency": "vnd"})
    stripe_post(client, f"/v1/payment_intents/{intent['id']}", {"payment_method": method["id"]})
    assert stripe_post(client, f"/v1/payment_intents/{intent['id']}/confirm", {})["status"] == "succeeded"
    return str(intent["id"])


def test_stripe_balance_lines_against_localstripe(localstripe: LocalStripe) -> None:
    transport = WithoutCreatedFilter()
    auth = {"Authorization": f"Bearer {localstripe.secret_key}"}
    with httpx.Client(base_url=localstripe.url, headers=auth, transport=transport, timeout=10) as client:
        now = int(time.time())
        first, second = paid_intent(client, 150_000), paid_intent(client, 1_200_000)
        stripe_post(client, "/v1/refunds", {"payment_intent": first, "amount": 50_000})
        lines = list(stripe_balance_lines(client, created_from=now - 60, created_to=now + 60, page_size=2))
        later = list(stripe_balance_lines(client, created_from=now + 60, created_to=now + 120))
    found = sorted((x.reference, x.kind, x.amount) for x in lines)
    assert found == sorted(
        [(first, LineKind.payment, 150_000), (second, LineKind.payment, 1_200_000), (first, LineKind.refund, -50_000)]
    )
    assert all(x.external_id.startswith("txn_") and x.currency == "VND" for x in lines)
    assert [x.source_line for x in lines] == [1, 2, 3]
    assert {x.booked_on for x in lines} <= {datetime.fromtimestamp(t, GMT7).date() for t in (now - 60, now + 60)}
    assert later == []  # outside the window: dropped even though localstripe ignored the filter
    asked = next(url for url in transport.asked if url.params.get("limit") == "2")
    assert asked.params["created[gte]"] == str(now - 60)
    assert asked.params["created[lt]"] == str(now + 60)
    assert asked.params["expand[]"] == "data.source"
    assert any("starting_after" in url.params for url in transport.asked)  # three lines in pages of two


def balance_transaction(txn_id: str, kind: str, amount: int, **extra: Any) -> dict[str, Any]:
    """Shaped like Stripe's documented balance_transaction object."""
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": 1735840800,
        "created": 1735752600,  # 2025-01-01T17:30:00Z, 00:30 on 2 January in GMT+7
        "currency": "vnd",
        "description": None,
        "exchange_rate": None,
        "fee": 0,
        "fee_details": [],
        "net": amount,
        "reporting_category": kind,
        "source": None,
        "status": "available",
        "type": kind,
        **extra,
    }


def respx_pages(pages: list[list[dict[str, Any]]]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("starting_after")
        index = 0 if cursor is None else next(i + 1 for i, p in enumerate(pages) if p[-1]["id"] == cursor)
        body = {"object": "list", "url": "/v1/balance_transactions", "has_more": index + 1 < len(pages)}
        return httpx.Response(200, json={**body, "data": pages[index]})

    return answer


@respx.mock
def test_stripe_balance_lines_map_every_type() -> None:
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1"}
    pages = [
        [
            balance_transaction("txn_1", "charge", 150_000, fee=5_000, source=charge, description="Le phi HS000123"),
            balance_transaction("txn_2", "refund", -50_000, source={"id": "re_1", "payment_intent": {"id": "pi_1"}}),
        ],
        [
            balance_transaction("txn_3", "stripe_fee", -20_000, source=None, description="Radar"),
            balance_transaction("txn_4", "payout", -80_000, source={"id": "po_1", "object": "payout"}),
            balance_transaction("txn_5", "adjustment", 1_000, source="ch_2"),
        ],
    ]
    route = respx.get(f"{RESPX_API}/v1/balance_transactions").mock(side_effect=respx_pages(pages))
    with httpx.Client(base_url=RESPX_API) as client:
        lines = list(stripe_balance_lines(client, created_from=1735689600, created_to=1735862400, page_size=2))
    assert [(x.external_id, x.kind, x.amount, x.fee, x.reference) for x in lines] == [
        ("txn_1", LineKind.payment, 150_000, 5_000, "pi_1"),
        ("txn_2", LineKind.refund, -50_000, 0, "pi_1"),
        ("txn_3", LineKind.fee, -20_000, 0, ""),
        ("txn_4", LineKind.payout, -80_000, 0, "po_1"),
        ("txn_5", LineKind.other, 1_000, 0, "ch_2"),
    ]
    assert {(x.booked_on, x.value_on) for x in lines} == {(date(2025, 1, 2), date(2025, 1, 3))}
    assert lines[0].description == "Le phi HS000123"
    assert route.calls[1].request.url.params["starting_after"] == "txn_2"
    assert route.calls[0].request.url.params["limit"] == "2"


@respx.mock
def test_stripe_balance_lines_refuse_other_currencies() -> None:
    usd = balance_transaction("txn_2", "charge", 900, currency="usd")
    respx.get(f"{RESPX_API}/v1/balance_transactions").mock(
        side_effect=respx_pages([[balance_transaction("txn_1", "charge", 150_000), usd]])
    )
    with httpx.Client(base_url=RESPX_API) as client, pytest.raises(StatementError) as info:
        list(stripe_balance_lines(client, created_from=0, created_to=2_000_000_000))
    assert info.value.line == 2
    assert info.value.message == "balance transaction txn_2: currency 'usd' is not VND: only VND lines are accepted"


@respx.mock
def test_stripe_balance_lines_raise_technical_errors_for_unreadable_listings() -> None:
    respx.get(f"{RESPX_API}/v1/balance_transactions").mock(return_value=httpx.Response(400, json={"error": {}}))
    with httpx.Client(base_url=RESPX_API) as client, pytest.raises(GatewayTechnicalError, match="HTTP 400"):
        list(stripe_balance_lines(client, created_from=0, created_to=1))
    with httpx.Client(base_url=RESPX_API) as client, pytest.raises(ValueError, match="page_size"):
        list(stripe_balance_lines(client, created_from=0, created_to=1, page_size=101))


def test_stripe_malformed_objects_name_their_position() -> None:
    with pytest.raises(StatementError, match="is malformed") as info:
        balance_line(balance_transaction("txn_1", "charge", amount=True), 7)  # bool is not an amount
    assert info.value.line == 7
