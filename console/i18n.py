"""Console texts in Vietnamese (the default) and English."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
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
    },
}
