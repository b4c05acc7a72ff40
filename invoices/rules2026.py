"""The rules of Decree 254/2026/ND-CP and Circular 91/2026/TT-BTC that this service applies to e-receipts.

Every fact here rests on secondary sources **[S]** or on this project's reading of them **[I]** (docs/domain.md,
section 3): the decree and circular are reported, their texts and XML changes are not public here. They are kept in
this one module so that the official texts, once published, change one file. Nothing else in the service may
hard-code a date, a form name or a count that belongs to these rules.
"""

from __future__ import annotations

from datetime import date
from typing import Final

# [S] The decree and circular apply from this day.
IN_FORCE_FROM: Final = date(2026, 7, 1)
# [S] Paper receipts may be used up to this day; from the next one every agency issues e-receipts only.
PAPER_RECEIPTS_LAST_DAY: Final = date(2026, 12, 31)
E_RECEIPTS_ONLY_FROM: Final = date(2027, 1, 1)

# [I, commonly read from Decree 123 art. 10, kept by the new decree per secondary sources] The number of a receipt
# has at most 8 digits and restarts at 1 on 1 January of each year, per (issuer, template, series).
MAX_NUMBER_DIGITS: Final = 8
MAX_NUMBER: Final = 10**MAX_NUMBER_DIGITS - 1

# [S] The e-receipts' data and their daily summary are due to the tax authority on the day of issue.
SUMMARY_DUE_SAME_DAY: Final = True
# [S] Form of the daily summary of e-receipts and its name.
SUMMARY_FORM: Final = "01/TH-BLĐT"
SUMMARY_TITLE: Final = "Bảng tổng hợp dữ liệu biên lai điện tử"
# [S] A day without a receipt still sends a summary, with no line, so the tax authority can tell a quiet day from a
# missing report. Switch to False if the official text asks for nothing on such a day.
SUMMARY_ON_EMPTY_DAY: Final = True

# [S] Form of the report on the use of receipts (used, cancelled, remaining, per template and series, per period).
USAGE_REPORT_FORM: Final = "BC26/BLĐT"
USAGE_REPORT_TITLE: Final = "Báo cáo tình hình sử dụng biên lai"
