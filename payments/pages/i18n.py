"""Page texts in Vietnamese and English."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "vi": {
        "lookup_title": "Tra cứu biên lai điện tử",
        "view_receipt": "Xem biên lai điện tử",
        "lookup_intro": "Nhập mã tra cứu in trên biên lai (12 ký tự) để xem, tải bản PDF hoặc tệp XML có chữ ký số.",
        "lookup_code": "Mã tra cứu",
        "lookup_submit": "Tra cứu",
        "lookup_not_found": "Không tìm thấy biên lai với mã này. Vui lòng kiểm tra lại mã tra cứu.",
        "lookup_rate_limited": "Bạn đã tra cứu quá nhiều lần. Vui lòng thử lại sau ít phút.",
        "lookup_unavailable": "Chức năng tra cứu tạm thời gián đoạn. Vui lòng thử lại sau ít phút.",
        "title": "Thanh toán lệ phí hồ sơ",
        "agency": "Cơ quan thu",
        "dossier": "Mã hồ sơ",
        "procedure": "Thủ tục",
        "payer": "Người nộp",
        "fee": "Khoản thu",
        "quantity": "Số lượng",
        "unit": "Đơn giá",
        "amount": "Thành tiền",
        "total": "Tổng cộng",
        "method": "Hình thức thanh toán",
        "pay": "Thanh toán",
        "status": "Trạng thái",
        "status_unpaid": "Chưa thanh toán",
        "status_paid": "Đã thanh toán",
        "status_refunded": "Đã hoàn tiền",
        "pay_pending": "Đang chờ xác nhận từ cổng thanh toán. Trang này sẽ cập nhật khi có kết quả.",
        "pay_failed": "Thanh toán không thành công. Bạn có thể thử lại.",
        "pay_succeeded": "Thanh toán thành công. Biên lai điện tử sẽ hiện trên trang này ngay khi được phát hành.",
        "pay_cancelled": "Bạn đã hủy thanh toán.",
        "refresh": "Cập nhật",
        "back": "Quay lại hồ sơ",
        "no_methods": "Cơ quan chưa bật hình thức thanh toán nào.",
        "agency_closed": (
            "Cơ quan này đã ngừng nhận thanh toán trực tuyến. Vui lòng liên hệ cơ quan để được hướng dẫn nộp phí."
        ),
        "sandbox_title": "Cổng thanh toán thử nghiệm",
        "sandbox_note": "Môi trường thử nghiệm: không có tiền thật. Chọn kết quả để mô phỏng cổng thanh toán.",
        "sandbox_success": "Thanh toán thành công",
        "sandbox_decline": "Bị từ chối",
        "sandbox_cancel": "Người nộp hủy",
        "sandbox_pending": "Để ở trạng thái chờ",
        "not_found": "Không tìm thấy trang",
        "method_sandbox": "Cổng thử nghiệm (sandbox)",
        "qr_title": "Chuyển khoản bằng mã VietQR",
        "qr_intro": "Mở ứng dụng ngân hàng, quét mã và chuyển đúng số tiền với đúng nội dung.",
        "qr_account_name": "Chủ tài khoản",
        "qr_account": "Số tài khoản",
        "qr_memo": "Nội dung chuyển khoản",
        "qr_note": "Giữ nguyên nội dung chuyển khoản. Chuyển thiếu, thừa hoặc sai nội dung sẽ được kế toán kiểm tra.",
        "qr_status_pending": "Đang chờ tiền về tài khoản",
        "qr_status_paid": "Đã nhận đủ tiền",
        "qr_status_closed": "Yêu cầu thanh toán đã đóng",
        "method_vietqr": "Chuyển khoản ngân hàng (VietQR)",
        "method_stripe": "Thẻ ngân hàng (Visa, Mastercard)",
        "method_vnpay": "VNPay",
        "method_momo": "Ví MoMo",
        "method_zalopay": "Ví ZaloPay",
        "card_title": "Thanh toán bằng thẻ",
        "card_needs_js": "Trang nhập thẻ cần bật JavaScript (thư viện của cổng thanh toán thẻ).",
        "card_failed": "Thẻ không được chấp nhận. Vui lòng thử thẻ khác.",
        "form_refused_title": "Không thể gửi biểu mẫu",
        "form_refused": (
            "Biểu mẫu đã hết hạn hoặc không được gửi từ trang của dịch vụ, nên chưa có thao tác nào được thực hiện. "
            "Vui lòng mở lại trang và thử lại."
        ),
        "form_refused_back": "Mở lại trang",
        "switch": "English",
        "title_paid": "Lệ phí hồ sơ đã được thanh toán",
        "paid_at": "Thời điểm thanh toán",
        "paid_amount": "Số tiền đã nộp",
        "paid_reference": "Mã giao dịch",
        "paid_method": "Hình thức",
        "receipt_title": "Biên lai điện tử",
        "receipt_waiting": "Biên lai điện tử đang được phát hành. Trang này sẽ hiện đường dẫn ngay khi có.",
        "receipt_code": "Mã tra cứu biên lai",
        "receipt_pdf": "Tải bản PDF",
        "receipt_xml": "Tải tệp XML có chữ ký số",
        "live_title": "Bạn đang có một giao dịch chưa hoàn tất",
        "live_started": "Bắt đầu lúc",
        "live_continue": "Tiếp tục thanh toán",
        "live_continue_vietqr": "Tiếp tục chuyển khoản",
        "live_other": "Thanh toán bằng cách khác",
        "live_other_note": (
            "Chọn cách khác sẽ hủy giao dịch đang dở. Nếu bạn đã chuyển tiền, đừng hủy: hãy chờ trang này cập nhật."
        ),
        "live_pending_note": "Trang này tự cập nhật khi có kết quả.",
        "checking": "Đang kiểm tra trạng thái…",
        "help_title": "Cần hỗ trợ?",
        "help_intro": "Liên hệ cơ quan thu nếu bạn có câu hỏi về hồ sơ hoặc khoản thu:",
        "help_generic": (
            "Nếu cần hỗ trợ, hãy liên hệ cơ quan đã tiếp nhận hồ sơ của bạn (số điện thoại in trên giấy biên nhận"
            " hồ sơ)."
        ),
        "help_phone": "Điện thoại",
        "help_email": "Thư điện tử",
        "help_address": "Địa chỉ",
        "nav_label": "Ngôn ngữ",
        "find_link": "Tìm hồ sơ",
        "error_back_dossier": "Mở lại trang hồ sơ",
        "error_find": "Tìm hồ sơ của bạn",
        "error_not_found_title": "Không tìm thấy trang",
        "error_not_found": (
            "Đường dẫn không đúng hoặc đã hết hiệu lực. Hãy mở lại đường dẫn được cơ quan gửi, hoặc tìm hồ sơ "
            "bằng mã hồ sơ và mã bí mật in trên giấy biên nhận."
        ),
        "error_validation_error_title": "Thông tin gửi lên chưa đủ",
        "error_validation_error": (
            "Biểu mẫu thiếu thông tin hoặc có giá trị không hợp lệ (ví dụ chưa chọn hình thức thanh toán), nên "
            "chưa có thao tác nào được thực hiện. Hãy mở lại trang, chọn hình thức thanh toán rồi bấm Thanh toán."
        ),
        "error_method_not_enabled_title": "Hình thức thanh toán không khả dụng",
        "error_method_not_enabled": (
            "Cơ quan thu chưa bật hình thức thanh toán này, nên chưa có khoản nào được thu. Hãy mở lại trang hồ "
            "sơ và chọn hình thức khác."
        ),
        "error_dossier_not_payable_title": "Hồ sơ không còn cần thanh toán",
        "error_dossier_not_payable": (
            "Hồ sơ này đã được thanh toán (có thể từ một thẻ hoặc cửa sổ khác) hoặc không còn nhận thanh toán. "
            "Không có khoản nào bị thu thêm. Mở trang hồ sơ để xem trạng thái và biên lai."
        ),
        "error_idempotency_key_reused_title": "Biểu mẫu đã được gửi trước đó",
        "error_idempotency_key_reused": (
            "Biểu mẫu này đã được gửi với lựa chọn khác (thường do bấm Quay lại trên trình duyệt). Không có khoản"
            " nào bị thu thêm. Hãy mở lại trang hồ sơ và thử lại."
        ),
        "error_idempotency_key_in_progress_title": "Giao dịch đang được khởi tạo",
        "error_idempotency_key_in_progress": (
            "Yêu cầu thanh toán trước của bạn vẫn đang được xử lý. Hãy chờ vài giây rồi mở lại trang hồ sơ."
        ),
        "error_payment_in_progress_title": "Đang có giao dịch chưa hoàn tất",
        "error_payment_in_progress": (
            "Hồ sơ đang có một giao dịch chưa hoàn tất. Mở trang hồ sơ để tiếp tục giao dịch đó hoặc chọn cách khác."
        ),
        "error_invalid_transition_title": "Không thể hủy giao dịch",
        "error_invalid_transition": (
            "Giao dịch đã kết thúc (có thể đã thanh toán thành công) nên không thể hủy. Mở trang hồ sơ để xem kết quả."
        ),
        "error_gateway_unavailable_title": "Cổng thanh toán chưa phản hồi",
        "error_gateway_unavailable": (
            "Không liên lạc được với cổng thanh toán, chưa có khoản nào được thu. Hãy thử lại sau ít phút hoặc "
            "chọn hình thức khác."
        ),
        "error_rate_limited_title": "Quá nhiều yêu cầu",
        "error_rate_limited": "Bạn đã thử quá nhiều lần. Vui lòng chờ ít phút rồi thử lại.",
        "error_payload_too_large_title": "Dữ liệu gửi lên quá lớn",
        "error_payload_too_large": (
            "Dữ liệu gửi lên quá lớn nên chưa có thao tác nào được thực hiện. Hãy mở lại trang và thử lại."
        ),
        "error_method_not_allowed_title": "Địa chỉ không mở được trang",
        "error_method_not_allowed": "Địa chỉ này không nhận yêu cầu kiểu này. Hãy mở lại trang hồ sơ.",
        "error_bad_request_title": "Yêu cầu không hợp lệ",
        "error_bad_request": (
            "Yêu cầu không hợp lệ nên chưa có thao tác nào được thực hiện. Hãy mở lại trang và thử lại."
        ),
        "error_server_error_title": "Dịch vụ đang gặp sự cố",
        "error_server_error": (
            "Đã có lỗi phía dịch vụ và lỗi đã được ghi lại. Hãy thử lại sau ít phút; nếu đã thanh toán, đừng "
            "thanh toán lại mà hãy mở lại trang hồ sơ."
        ),
        "find_title": "Tìm hồ sơ để thanh toán",
        "find_intro": (
            "Nhập mã hồ sơ và mã bí mật in trên giấy biên nhận hồ sơ (phiếu hẹn trả kết quả) để mở trang thanh toán."
        ),
        "find_code": "Mã hồ sơ",
        "find_secret": "Mã bí mật",
        "find_secret_hint": "8 ký tự, in dưới mã hồ sơ, ví dụ ABCD-EFGH.",
        "find_submit": "Tìm hồ sơ",
        "find_not_found": "Không tìm thấy hồ sơ với mã hồ sơ và mã bí mật này. Vui lòng kiểm tra lại cả hai mã.",
        "find_rate_limited": "Bạn đã tìm quá nhiều lần. Vui lòng thử lại sau ít phút.",
        "find_unavailable": "Chức năng tìm hồ sơ tạm thời gián đoạn. Vui lòng thử lại sau ít phút.",
        "find_secret_label": "Mã bí mật tra cứu hồ sơ",
        "qr_bank": "Ngân hàng",
        "qr_dossier": "Mã hồ sơ",
        "qr_deadline": "Hạn chuyển khoản",
        "qr_copy": "Sao chép",
        "qr_copied": "Đã sao chép",
        "qr_copy_of": "Sao chép {}",
        "qr_open_app": "Mở ứng dụng ngân hàng",
        "qr_open_app_note": (
            "Trên điện thoại, nút này mở ứng dụng ngân hàng với thông tin chuyển khoản đã điền sẵn (nếu ngân hàng"
            " của bạn hỗ trợ)."
        ),
        "qr_image_alt": "Mã VietQR để chuyển {amount} vào tài khoản {account}",
        "qr_back": "Quay lại hồ sơ",
    },
    "en": {
        "lookup_title": "Look up an e-receipt",
        "view_receipt": "View the e-receipt",
        "lookup_intro": (
            "Enter the lookup code printed on the receipt (12 characters) to view it, "
            "or download the PDF copy or the signed XML."
        ),
        "lookup_code": "Lookup code",
        "lookup_submit": "Look up",
        "lookup_not_found": "No receipt has this code. Please check the lookup code.",
        "lookup_rate_limited": "Too many lookups. Please try again in a few minutes.",
        "lookup_unavailable": "Receipt lookup is briefly unavailable. Please try again in a few minutes.",
        "title": "Pay the dossier fee",
        "agency": "Collecting agency",
        "dossier": "Dossier code",
        "procedure": "Procedure",
        "payer": "Payer",
        "fee": "Fee",
        "quantity": "Quantity",
        "unit": "Unit price",
        "amount": "Amount",
        "total": "Total",
        "method": "Payment method",
        "pay": "Pay",
        "status": "Status",
        "status_unpaid": "Not paid",
        "status_paid": "Paid",
        "status_refunded": "Refunded",
        "pay_pending": "Waiting for the payment gateway to confirm. This page updates when it does.",
        "pay_failed": "The payment did not go through. You can try again.",
        "pay_succeeded": "Payment received. The e-receipt appears on this page as soon as it is issued.",
        "pay_cancelled": "You cancelled the payment.",
        "refresh": "Refresh",
        "back": "Back to the dossier",
        "no_methods": "The agency has not enabled any payment method.",
        "agency_closed": "This agency no longer takes online payments. Please contact the agency to pay the fee.",
        "sandbox_title": "Test payment gateway",
        "sandbox_note": "Test environment: no real money moves. Pick an outcome to play the gateway.",
        "sandbox_success": "Payment succeeds",
        "sandbox_decline": "Declined",
        "sandbox_cancel": "Payer cancels",
        "sandbox_pending": "Leave it pending",
        "not_found": "Page not found",
        "method_sandbox": "Test gateway (sandbox)",
        "qr_title": "Pay by bank transfer with VietQR",
        "qr_intro": "Open your banking app, scan the code and transfer the exact amount with the exact memo.",
        "qr_account_name": "Account holder",
        "qr_account": "Account number",
        "qr_memo": "Transfer memo",
        "qr_note": "Keep the memo as it is. A transfer that is short, over or without the memo is checked by finance.",
        "qr_status_pending": "Waiting for the money to arrive",
        "qr_status_paid": "Payment received",
        "qr_status_closed": "This payment request is closed",
        "method_vietqr": "Bank transfer (VietQR)",
        "method_stripe": "Card (Visa, Mastercard)",
        "method_vnpay": "VNPay",
        "method_momo": "MoMo e-wallet",
        "method_zalopay": "ZaloPay e-wallet",
        "card_title": "Pay by card",
        "card_needs_js": "The card form needs JavaScript (the card gateway's library).",
        "card_failed": "The card was not accepted. Please try another card.",
        "form_refused_title": "The form could not be sent",
        "form_refused": (
            "The form has expired or was not sent from the service's own page, so nothing was done. "
            "Please open the page again and retry."
        ),
        "form_refused_back": "Open the page again",
        "switch": "Tiếng Việt",
        "title_paid": "The dossier fee is paid",
        "paid_at": "Paid on",
        "paid_amount": "Amount paid",
        "paid_reference": "Transaction reference",
        "paid_method": "Method",
        "receipt_title": "E-receipt",
        "receipt_waiting": "The e-receipt is being issued. A link appears on this page as soon as it is ready.",
        "receipt_code": "Receipt lookup code",
        "receipt_pdf": "Download the PDF",
        "receipt_xml": "Download the signed XML",
        "live_title": "You have a payment in progress",
        "live_started": "Started",
        "live_continue": "Continue your payment",
        "live_continue_vietqr": "Continue your transfer",
        "live_other": "Pay another way",
        "live_other_note": (
            "Paying another way cancels the payment in progress. If you have already sent the money, do not "
            "cancel: wait for this page to update."
        ),
        "live_pending_note": "This page updates by itself when there is an outcome.",
        "checking": "Checking the status…",
        "help_title": "Need help?",
        "help_intro": "Contact the collecting agency with any question about the dossier or the fee:",
        "help_generic": (
            "For help, contact the agency that received your dossier (its phone number is on the dossier receipt)."
        ),
        "help_phone": "Phone",
        "help_email": "E-mail",
        "help_address": "Address",
        "nav_label": "Language",
        "find_link": "Find a dossier",
        "error_back_dossier": "Open the dossier page again",
        "error_find": "Find your dossier",
        "error_not_found_title": "Page not found",
        "error_not_found": (
            "The link is wrong or no longer valid. Open the link the agency sent you again, or find the dossier "
            "by its code and the secret printed on the dossier receipt."
        ),
        "error_validation_error_title": "The form is incomplete",
        "error_validation_error": (
            "The form is missing something or has an invalid value (for example no payment method chosen), so "
            "nothing was done. Open the page again, choose a payment method and press Pay."
        ),
        "error_method_not_enabled_title": "This payment method is not available",
        "error_method_not_enabled": (
            "The agency has not enabled this payment method, so nothing was charged. Open the dossier page again "
            "and choose another method."
        ),
        "error_dossier_not_payable_title": "This dossier needs no payment now",
        "error_dossier_not_payable": (
            "This dossier has already been paid (perhaps from another tab or window) or no longer takes payments."
            " Nothing more was charged. Open the dossier page to see its status and receipt."
        ),
        "error_idempotency_key_reused_title": "This form was already sent",
        "error_idempotency_key_reused": (
            "This form was already sent with a different choice (usually after the browser's Back button). "
            "Nothing more was charged. Open the dossier page again and retry."
        ),
        "error_idempotency_key_in_progress_title": "The payment is being started",
        "error_idempotency_key_in_progress": (
            "Your earlier payment request is still being processed. Wait a few seconds, then open the dossier "
            "page again."
        ),
        "error_payment_in_progress_title": "A payment is in progress",
        "error_payment_in_progress": (
            "The dossier has a payment in progress. Open the dossier page to continue it or to pay another way."
        ),
        "error_invalid_transition_title": "The payment cannot be cancelled",
        "error_invalid_transition": (
            "The payment has finished (it may have succeeded), so it cannot be cancelled. Open the dossier page "
            "to see the outcome."
        ),
        "error_gateway_unavailable_title": "The payment gateway did not answer",
        "error_gateway_unavailable": (
            "The payment gateway could not be reached and nothing was charged. Try again in a few minutes or "
            "choose another method."
        ),
        "error_rate_limited_title": "Too many requests",
        "error_rate_limited": "Too many attempts. Please wait a few minutes and try again.",
        "error_payload_too_large_title": "What was sent is too large",
        "error_payload_too_large": "What was sent is too large, so nothing was done. Open the page again and retry.",
        "error_method_not_allowed_title": "This address opens no page",
        "error_method_not_allowed": "This address does not take this kind of request. Open the dossier page again.",
        "error_bad_request_title": "Invalid request",
        "error_bad_request": "The request is not valid, so nothing was done. Open the page again and retry.",
        "error_server_error_title": "The service has a problem",
        "error_server_error": (
            "Something went wrong on our side and it has been logged. Try again in a few minutes; if you have "
            "paid, do not pay again but open the dossier page again."
        ),
        "find_title": "Find a dossier to pay",
        "find_intro": (
            "Enter the dossier code and the secret printed on the dossier receipt (the appointment slip) to open "
            "its payment page."
        ),
        "find_code": "Dossier code",
        "find_secret": "Secret",
        "find_secret_hint": "8 characters, printed under the dossier code, e.g. ABCD-EFGH.",
        "find_submit": "Find the dossier",
        "find_not_found": "No dossier has this code and secret. Please check both.",
        "find_rate_limited": "Too many searches. Please try again in a few minutes.",
        "find_unavailable": "Dossier search is briefly unavailable. Please try again in a few minutes.",
        "find_secret_label": "Dossier lookup secret",
        "qr_bank": "Bank",
        "qr_dossier": "Dossier code",
        "qr_deadline": "Transfer by",
        "qr_copy": "Copy",
        "qr_copied": "Copied",
        "qr_copy_of": "Copy {}",
        "qr_open_app": "Open your banking app",
        "qr_open_app_note": (
            "On a phone, this opens your banking app with the transfer filled in (if your bank supports it)."
        ),
        "qr_image_alt": "VietQR code to transfer {amount} to account {account}",
        "qr_back": "Back to the dossier",
    },
}
