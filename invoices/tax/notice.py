"""The taxpayer's notice of an erroneous e-invoice or e-receipt, form 04/SS-HĐĐT (domain.md 3.5).

Model -> deterministic XML -> XSD check (``invoices/schema/tbao-2.1.0.xsd``) -> the agency's signature in
``TBao/DSCKS/NNT``. Layout (no namespace; ``DSCKS/NNT`` empty until signed)::

    <TBao>
      <DLTBao Id="DLTBao">
        <PBan/> <MSo/> <Ten/> <Loai/> <So/>? <MCQT/> <TCQT/> <TNNT/> <MST/> <DDanh/> <NTBao/>
        <DSHDon><HDon><STT/><KHMSHDon/><KHHDon/><SHDon/><Ngay/><LADHDDT/><TCTBao/><LDo/></HDon>...</DSHDon>
      </DLTBao>
      <DSCKS><NNT/></DSCKS>
    </TBao>

The element names, their order and the TCTBao codes are [V]. The facts that are not settled are the
:class:`NoticeProfile` below, the one place to change them. The tax office's code and name (MCQT, TCQT) belong to
the agency's registration, which the service does not hold yet: the caller passes them with each notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from invoices.content import DocumentId, Number, Series, TaxCode, Template, Text30, Text50, Text100, Text255, Text400
from invoices.errors import InvalidDocument, Reason
from invoices.validate import conform
from invoices.xmldsig import parse_xml

if TYPE_CHECKING:
    from invoices.signing import Signer
    from invoices.tables import Document as DocumentRow

__all__ = [
    "NOTICE_PROFILES",
    "Notice",
    "NoticeAction",
    "NoticeProfile",
    "NoticedDocument",
    "notice_xml",
    "signed_notice",
    "validate_notice",
]

_Element: TypeAlias = Any  # an lxml element, untyped for the reason above
_Child = tuple[str, str | None]


# --- The facts that are not settled ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeProfile:
    version: str
    xsd: str
    # MSo [V].
    form: str = "04/SS-HĐĐT"
    # Ten [I]: the name printed on the form; the field list gives the tag, not the text.
    title: str = "Thông báo hóa đơn điện tử có sai sót"
    # Loai [I]: 1 = on the taxpayer's own initiative, the only kind Lephi sends; 2 would answer a tax-authority request.
    kind: int = 1
    # LADHDDT [I, read like LHDCLQuan]: 1 = an e-invoice under Decree 123, the only kind this service issues.
    invoice_type: int = 1


NOTICE_2_1_0: Final = NoticeProfile(version="2.1.0", xsd="tbao-2.1.0.xsd")
NOTICE_PROFILES: Final = MappingProxyType({NOTICE_2_1_0.version: NOTICE_2_1_0})

# ---------------------------------------------------------------------------------------------------------------------


class NoticeAction(IntEnum):
    """TCTBao: what the taxpayer does about the erroneous document."""

    cancel = 1
    adjust = 2
    replace = 3
    explain = 4


def _action(value: object) -> object:
    # bool is an int in Python: True would pass as "cancel" without this exact-type test.
    if not (type(value) is int or isinstance(value, NoticeAction)) or value not in set(NoticeAction):
        raise ValueError("TCTBao must be 1 (cancel), 2 (adjust), 3 (replace) or 4 (explain)")
    return value


def check_office_code(value: str) -> str:
    if not (value.isascii() and value.isdigit() and 3 <= len(value) <= 5):
        raise ValueError("is not a tax office code (MCQT, 3-5 digits)")
    return value


Action = Annotated[NoticeAction, BeforeValidator(_action)]
TaxOfficeCode = Annotated[str, AfterValidator(check_office_code)]
LineNo = Annotated[int, Field(strict=True, ge=1, le=9999)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoticedDocument(_Frozen):
    """DSHDon/HDon: one erroneous document, what is done about it, and why."""

    line_no: LineNo  # STT
    template: Template  # KHMSHDon
    series: Series  # KHHDon
    number: Number  # SHDon
    issue_date: date  # Ngay
    action: Action  # TCTBao
    reason: Text255  # LDo

    @classmethod
    def from_document(cls, row: DocumentRow, line_no: int, action: NoticeAction, reason: str) -> NoticedDocument:
        return cls(
            line_no=line_no,
            template=row.template,
            series=row.series,
            number=row.number,
            issue_date=row.issue_date,
            action=action,
            reason=reason,
        )


class Notice(_Frozen):
    """TBao/DLTBao: the notice, sent by the agency as taxpayer to the tax office that manages it."""

    format_version: Literal["2.1.0"] = "2.1.0"
    number: Text30 | None = None  # So
    tax_office_code: TaxOfficeCode  # MCQT
    tax_office_name: Text100  # TCQT
    taxpayer_name: Text400  # TNNT
    tax_code: TaxCode  # MST
    place: Text50  # DDanh
    notice_date: date  # NTBao
    documents: Annotated[tuple[NoticedDocument, ...], Field(min_length=1, max_length=9999)]
    notice_id: DocumentId = "DLTBao"

    @property
    def profile(self) -> NoticeProfile:
        return NOTICE_PROFILES[self.format_version]

    @model_validator(mode="after")
    def _consistent(self) -> Notice:
        numbers = [document.line_no for document in self.documents]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"document line numbers (STT) must be 1..{len(numbers)} in order, not {numbers}")
        keys = [(d.template, d.series, d.number, d.issue_date.year) for d in self.documents]
        if len(set(keys)) != len(keys):
            raise ValueError("a document is listed twice in the notice")
        late = [f"{d.template}{d.series} {d.number}" for d in self.documents if d.issue_date > self.notice_date]
        if late:
            raise ValueError(f"the notice is dated before the documents it is about: {', '.join(late)}")
        return self


def notice_xml(notice: Notice) -> bytes:
    """The unsigned TBao, deterministic: the same notice always yields the same bytes."""
    profile = notice.profile
    root = etree.Element("TBao")
    data = etree.SubElement(root, "DLTBao", Id=notice.notice_id)
    _children(
        data,
        [
            ("PBan", profile.version),
            ("MSo", profile.form),
            ("Ten", profile.title),
            ("Loai", str(profile.kind)),
            ("So", notice.number),
            ("MCQT", notice.tax_office_code),
            ("TCQT", notice.tax_office_name),
            ("TNNT", notice.taxpayer_name),
            ("MST", notice.tax_code),
            ("DDanh", notice.place),
            ("NTBao", notice.notice_date.isoformat()),
        ],
    )
    listing = etree.SubElement(data, "DSHDon")
    for document in notice.documents:
        listing.append(_document(document, profile))
    etree.SubElement(etree.SubElement(root, "DSCKS"), "NNT")
    xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml


def validate_notice(xml: bytes) -> None:
    """Raise ``InvalidDocument`` unless ``xml`` is a TBao valid for the version its PBan names."""
    root = parse_xml(xml)
    version = root.findtext("DLTBao/PBan")
    if root.tag != "TBao" or version not in NOTICE_PROFILES:
        raise InvalidDocument(
            Reason.schema, f"line {root.sourceline}: not a TBao of a known format version (PBan {version!r})"
        )
    conform(root, NOTICE_PROFILES[version].xsd)


def signed_notice(signer: Signer, notice: Notice) -> bytes:
    """The notice as XML, checked against the XSD, signed by the agency: never sign what the format would reject."""
    xml = notice_xml(notice)
    validate_notice(xml)
    return signer.sign_notice(xml)


def _document(document: NoticedDocument, profile: NoticeProfile) -> _Element:
    element = etree.Element("HDon")
    _children(
        element,
        [
            ("STT", str(document.line_no)),
            ("KHMSHDon", document.template),
            ("KHHDon", document.series),
            ("SHDon", str(document.number)),
            ("Ngay", document.issue_date.isoformat()),
            ("LADHDDT", str(profile.invoice_type)),
            ("TCTBao", str(int(document.action))),
            ("LDo", document.reason),
        ],
    )
    return element


def _children(parent: _Element, children: Sequence[_Child]) -> None:
    for tag, text in children:
        if text is not None:
            etree.SubElement(parent, tag).text = text
