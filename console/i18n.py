"""Console texts in Vietnamese (the default) and English.

The texts shared by every page are here; a feature keeps its own in ``console/<feature>/texts.py`` (a ``TEXTS``
dict, no imports) and is listed in ``_FEATURES``. A key defined twice, or in one language only, stops the import."""

from __future__ import annotations

from console.agencies.texts import TEXTS as AGENCIES
from console.certificate.texts import TEXTS as CERTIFICATE_TEXTS
from console.dashboard.texts import TEXTS as DASHBOARD
from console.fees.texts import TEXTS as FEES
from console.gateways.texts import TEXTS as GATEWAYS_TEXTS
from console.payments.texts import TEXTS as PAYMENTS_TEXTS
from console.receipts.texts import TEXTS as RECEIPTS
from console.reconcile import texts as reconcile_texts
from console.refunds.texts import TEXTS as REFUNDS
from console.reports.texts import TEXTS as REPORTS
from console.staff.texts import TEXTS as STAFF_TEXTS

Catalog = dict[str, dict[str, str]]

_CORE: Catalog = {
    "vi": {
        "console": "Trang quản trị Lephi",
        "switch": "English",
        "login_title": "Đăng nhập",
        "email": "Địa chỉ email",
        "password": "Mật khẩu",
        "password_confirm": "Nhập lại mật khẩu",
        "sign_in": "Đăng nhập",
        "sign_out": "Đăng xuất",
        "bad_credentials": "Email hoặc mật khẩu không đúng.",
        "throttled": (
            "Đăng nhập sai quá nhiều lần. Vì an toàn, vui lòng thử lại sau {time} (giờ Việt Nam). "
            "Nếu quên mật khẩu, hãy đề nghị quản trị viên gửi đường dẫn đặt lại mật khẩu."
        ),
        "signed_out": "Bạn đã đăng xuất.",
        "password_done": "Đã lưu mật khẩu. Vui lòng đăng nhập bằng mật khẩu mới.",
        "set_password_title": "Đặt mật khẩu",
        "set_password_intro": "Đặt mật khẩu cho tài khoản {email}. Mật khẩu cần ít nhất 12 ký tự.",
        "save_password": "Lưu mật khẩu",
        "password_too_short": "Mật khẩu cần ít nhất 12 ký tự.",
        "password_too_long": "Mật khẩu quá dài (tối đa 256 ký tự).",
        "password_invalid": "Mật khẩu chứa ký tự không hợp lệ.",
        "password_is_email": "Không được dùng địa chỉ email làm mật khẩu.",
        "password_mismatch": "Hai mật khẩu không khớp.",
        "link_invalid_title": "Đường dẫn không còn hiệu lực",
        "link_invalid": (
            "Đường dẫn này đã được dùng, đã hết hạn hoặc không đúng. Hãy đề nghị quản trị viên gửi đường dẫn mới."
        ),
        "home_title": "Trang chính",
        "signed_in_as": "Đang đăng nhập",
        "role": "Vai trò",
        "agency": "Cơ quan",
        "all_agencies": "Tất cả cơ quan trong tỉnh",
        "home_note": "Các chức năng quản trị sẽ được bổ sung dần tại đây.",
        "role_province_admin": "Quản trị cấp tỉnh",
        "role_agency_admin": "Quản trị cơ quan",
        "role_finance": "Kế toán",
        "role_approver": "Người phê duyệt",
        "role_viewer": "Chỉ xem",
        "form_refused_title": "Không thể gửi biểu mẫu",
        "form_refused": (
            "Biểu mẫu đã hết hạn hoặc không được gửi từ trang của dịch vụ, nên chưa có thao tác nào được thực hiện. "
            "Vui lòng mở lại trang và thử lại."
        ),
        "bad_request_title": "Yêu cầu không hợp lệ",
        "bad_request": "Dữ liệu gửi lên không hợp lệ (quá dài hoặc chứa ký tự không cho phép). Vui lòng thử lại.",
        "not_found_title": "Không tìm thấy trang",
        "not_found": "Trang bạn tìm không tồn tại.",
        "back_to_login": "Về trang đăng nhập",
        "back_home": "Về trang chính",
        "forbidden_title": "Không có quyền truy cập",
        "forbidden": "Vai trò của bạn không được mở trang này hoặc thực hiện thao tác này. Chưa có thay đổi nào.",
        "admin_pages": "Trang quản trị",
        "menu": "Trình đơn",
        "choose_agency": "Chọn cơ quan:",
        "keys_title": "Khóa API",
        "keys_list": "Các khóa API của cơ quan",
        "keys_none": "Cơ quan chưa có khóa API nào.",
        "keys_back": "Về danh sách khóa API",
        "key_name": "Tên khóa",
        "key_prefix": "Ký tự đầu",
        "key_scopes": "Quyền",
        "key_created": "Ngày tạo",
        "key_state": "Trạng thái",
        "key_active": "Đang dùng",
        "key_revoked": "Đã thu hồi",
        "key_last_used": "Lần dùng gần nhất",
        "key_never_used": "Chưa dùng",
        "key_last_used_note": "Lần dùng gần nhất được ghi lại chậm tối đa khoảng một phút.",
        "key_revoke": "Thu hồi",
        "key_new": "Tạo khóa mới",
        "key_create": "Tạo khóa",
        "key_name_needed": "Cần nhập tên khóa (tối đa 200 ký tự).",
        "key_scopes_needed": "Cần chọn ít nhất một quyền.",
        "key_created_title": "Đã tạo khóa API",
        "key_once": (
            "Hãy sao chép khóa này ngay và lưu ở nơi an toàn. Khóa chỉ hiển thị một lần duy nhất trên trang này; "
            "sau đó không ai xem lại được. Nếu làm mất, hãy thu hồi và tạo khóa mới."
        ),
        "key_value": "Khóa API",
        "key_revoke_title": "Thu hồi khóa API",
        "key_revoke_warning": "Sau khi thu hồi, hệ thống dùng khóa này sẽ bị từ chối ngay. Không thể hoàn tác.",
        "key_revoke_confirm": "Xác nhận thu hồi",
        "key_already_revoked": "Khóa này đã bị thu hồi.",
        "key_revoked_done": "Đã thu hồi khóa.",
        "audit_title": "Nhật ký thao tác",
        "audit_chain": "Chuỗi nhật ký",
        "audit_chains": "Các chuỗi",
        "audit_province_chain": "Cấp tỉnh",
        "audit_verified": "Chuỗi nhật ký toàn vẹn ({rows} dòng đã kiểm tra).",
        "audit_broken": "Chuỗi nhật ký KHÔNG toàn vẹn từ dòng số {seq}: {reason}. Hãy báo ngay cho quản trị cấp tỉnh.",
        "audit_action": "Thao tác",
        "audit_actor": "Người thực hiện (mã hoặc email)",
        "audit_from": "Từ ngày",
        "audit_to": "Đến ngày",
        "audit_filter": "Lọc",
        "audit_rows": "Các dòng nhật ký, mới nhất trước",
        "audit_at": "Thời điểm (giờ Việt Nam)",
        "audit_ip": "Địa chỉ",
        "audit_target": "Đối tượng",
        "audit_none": "Không có dòng nào.",
        "page_newer": "← Mới hơn",
        "page_older": "Cũ hơn →",
    },
    "en": {
        "console": "Lephi staff console",
        "switch": "Tiếng Việt",
        "login_title": "Sign in",
        "email": "Email address",
        "password": "Password",
        "password_confirm": "Repeat the password",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "bad_credentials": "The email address or the password is not correct.",
        "throttled": (
            "Too many failed sign-ins. For safety, please try again after {time} (Vietnam time). "
            "If you have forgotten your password, ask an administrator for a reset link."
        ),
        "signed_out": "You have signed out.",
        "password_done": "Your password is saved. Please sign in with it.",
        "set_password_title": "Set your password",
        "set_password_intro": "Set the password of the account {email}. It needs at least 12 characters.",
        "save_password": "Save the password",
        "password_too_short": "The password needs at least 12 characters.",
        "password_too_long": "The password is too long (256 characters at most).",
        "password_invalid": "The password contains a character that is not allowed.",
        "password_is_email": "The email address cannot be the password.",
        "password_mismatch": "The two passwords differ.",
        "link_invalid_title": "This link no longer works",
        "link_invalid": "This link has been used, has expired or is wrong. Ask an administrator for a new one.",
        "home_title": "Home",
        "signed_in_as": "Signed in as",
        "role": "Role",
        "agency": "Agency",
        "all_agencies": "All agencies of the province",
        "home_note": "The administration pages will appear here.",
        "role_province_admin": "Province administrator",
        "role_agency_admin": "Agency administrator",
        "role_finance": "Finance",
        "role_approver": "Approver",
        "role_viewer": "Viewer",
        "form_refused_title": "The form cannot be sent",
        "form_refused": (
            "The form has expired or was not sent from this service's page, so nothing was done. "
            "Please open the page again and retry."
        ),
        "bad_request_title": "Invalid request",
        "bad_request": "What was sent is not valid (too long, or characters that are not allowed). Please try again.",
        "not_found_title": "Page not found",
        "not_found": "The page you are looking for does not exist.",
        "back_to_login": "Back to sign-in",
        "back_home": "Back to home",
        "forbidden_title": "Not allowed",
        "forbidden": "Your role may not open this page or do this. Nothing was changed.",
        "admin_pages": "Administration",
        "menu": "Menu",
        "choose_agency": "Choose an agency:",
        "keys_title": "API keys",
        "keys_list": "The agency's API keys",
        "keys_none": "The agency has no API key yet.",
        "keys_back": "Back to the API keys",
        "key_name": "Key name",
        "key_prefix": "Starts with",
        "key_scopes": "Scopes",
        "key_created": "Created",
        "key_state": "State",
        "key_active": "Active",
        "key_revoked": "Revoked",
        "key_last_used": "Last used",
        "key_never_used": "Never",
        "key_last_used_note": "The last use is recorded within about a minute.",
        "key_revoke": "Revoke",
        "key_new": "New key",
        "key_create": "Create the key",
        "key_name_needed": "Give the key a name (200 characters at most).",
        "key_scopes_needed": "Choose at least one scope.",
        "key_created_title": "API key created",
        "key_once": (
            "Copy this key now and keep it somewhere safe. It is shown once, on this page only; nobody can see it "
            "again. If it is lost, revoke it and create a new one."
        ),
        "key_value": "API key",
        "key_revoke_title": "Revoke an API key",
        "key_revoke_warning": "Once revoked, the system using this key is refused at once. This cannot be undone.",
        "key_revoke_confirm": "Revoke the key",
        "key_already_revoked": "This key is already revoked.",
        "key_revoked_done": "The key is revoked.",
        "audit_title": "Audit log",
        "audit_chain": "Chain",
        "audit_chains": "Chains",
        "audit_province_chain": "Province",
        "audit_verified": "The chain verifies ({rows} rows checked).",
        "audit_broken": "The chain does NOT verify from row {seq}: {reason}. Tell the province administrators now.",
        "audit_action": "Action",
        "audit_actor": "Actor (id or email)",
        "audit_from": "From",
        "audit_to": "To",
        "audit_filter": "Filter",
        "audit_rows": "Audit rows, newest first",
        "audit_at": "When (Vietnam time)",
        "audit_ip": "Address",
        "audit_target": "Target",
        "audit_none": "No rows.",
        "page_newer": "← Newer",
        "page_older": "Older →",
    },
}


_FEATURES: list[Catalog] = [
    PAYMENTS_TEXTS,
    REFUNDS,
    STAFF_TEXTS,
    reconcile_texts.TEXTS,
    DASHBOARD,
    REPORTS,
    CERTIFICATE_TEXTS,
    GATEWAYS_TEXTS,
    AGENCIES,
    FEES,
    RECEIPTS,
]


def _merge(core: Catalog, features: list[Catalog]) -> Catalog:
    merged = {lang: dict(texts) for lang, texts in core.items()}
    for catalog in features:
        if set(catalog) != set(merged):
            raise RuntimeError(f"a console catalog has languages {sorted(catalog)}, not {sorted(merged)}")
        for lang, texts in catalog.items():
            twice = set(texts) & set(merged[lang])
            if twice:
                raise RuntimeError(f"console texts defined twice: {sorted(twice)}")
            merged[lang].update(texts)
    keys = [set(texts) for texts in merged.values()]
    if any(k != keys[0] for k in keys):
        every: set[str] = set().union(*keys)
        raise RuntimeError(f"console texts in one language only: {sorted(every.difference(*keys[:1]) or every)}")
    return merged


MESSAGES: Catalog = _merge(_CORE, _FEATURES)
