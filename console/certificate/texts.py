"""Texts of the signing certificate page."""

TEXTS = {
    "vi": {
        "cert_title": "Chứng thư số ký biên lai",
        "cert_current": "Chứng thư số đang dùng",
        "cert_none": "Cơ quan chưa có chứng thư số. Biên lai chưa thể được ký.",
        "cert_unreadable": "Không đọc được tệp chứng thư số hiện tại. Hãy tải lên chứng thư số thay thế.",
        "cert_subject": "Chủ thể",
        "cert_tax_code": "Mã số thuế (trong chủ thể)",
        "cert_issuer": "Tổ chức cấp",
        "cert_serial": "Số hiệu",
        "cert_not_before": "Có hiệu lực từ (giờ Việt Nam)",
        "cert_not_after": "Hết hiệu lực lúc (giờ Việt Nam)",
        "cert_fingerprint": "Dấu vân tay SHA-256",
        "cert_days_left": "Số ngày còn lại",
        "cert_state_valid": "Còn hiệu lực.",
        "cert_state_expiring": (
            "Chứng thư số sắp hết hạn (còn {days} ngày). Hãy tải lên chứng thư số mới trước khi hết hạn."
        ),
        "cert_state_expired": (
            "CHỨNG THƯ SỐ ĐÃ HẾT HẠN. Biên lai ký bằng chứng thư này không còn giá trị pháp lý. "
            "Hãy tải lên chứng thư số mới ngay."
        ),
        "cert_state_not_yet_valid": "Chứng thư số chưa đến ngày có hiệu lực.",
        "cert_tax_code_differs": "Mã số thuế trong chứng thư số ({found}) khác mã số thuế của cơ quan ({agency}).",
        "cert_replace": "Thay chứng thư số",
        "cert_replace_intro": (
            "Tải lên tệp .p12/.pfx kèm mật khẩu, hoặc chứng thư số PEM kèm khóa riêng PEM. Mỗi tệp tối đa {kb} KB. "
            "Chứng thư số phải mang mã số thuế của cơ quan, đang trong thời hạn hiệu lực và dùng khóa RSA từ 2048 bit. "
            "Biên lai đã ký bằng chứng thư số cũ vẫn được xác minh."
        ),
        "cert_read_only": "Chỉ quản trị viên được thay chứng thư số.",
        "cert_p12_legend": "Tệp PKCS#12 (.p12 hoặc .pfx)",
        "cert_p12_file": "Tệp .p12/.pfx",
        "cert_p12_password": "Mật khẩu của tệp",
        "cert_pem_legend": "Chứng thư số và khóa riêng dạng PEM",
        "cert_pem_cert": "Tệp chứng thư số (PEM)",
        "cert_pem_key": "Tệp khóa riêng (PEM)",
        "cert_pem_password": "Mật khẩu của khóa riêng (nếu có)",
        "cert_upload": "Tải lên và thay thế",
        "cert_replaced_done": "Đã thay chứng thư số. Các biên lai mới được ký bằng chứng thư số này.",
        "cert_refused_wrong_password": "Mật khẩu không đúng (hoặc tệp bị hỏng). Chưa có thay đổi nào.",
        "cert_refused_not_certificate": "Tệp tải lên không phải là chứng thư số. Chưa có thay đổi nào.",
        "cert_refused_p12_incomplete": "Tệp .p12 phải chứa cả khóa riêng và chứng thư số. Chưa có thay đổi nào.",
        "cert_refused_not_key": "Tệp khóa riêng không phải là khóa riêng PEM. Chưa có thay đổi nào.",
        "cert_refused_not_rsa": "Khóa riêng phải là khóa RSA. Chưa có thay đổi nào.",
        "cert_refused_weak_key": "Khóa RSA quá ngắn: cần ít nhất 2048 bit. Chưa có thay đổi nào.",
        "cert_refused_key_mismatch": "Khóa riêng không thuộc chứng thư số này. Chưa có thay đổi nào.",
        "cert_refused_wrong_tax_code": (
            "Mã số thuế trong chứng thư số không phải của cơ quan này. Chưa có thay đổi nào."
        ),
        "cert_refused_expired": "Chứng thư số đã hết hạn. Chưa có thay đổi nào.",
        "cert_refused_not_yet_valid": "Chứng thư số chưa đến ngày có hiệu lực. Chưa có thay đổi nào.",
        "cert_refused_file_missing": "Chưa chọn tệp. Chưa có thay đổi nào.",
        "cert_refused_write_failed": (
            "Không lưu được chứng thư số trên máy chủ. Biên lai vẫn được ký bằng chứng thư số cũ. Hãy báo quản trị."
        ),
        "cert_refused_too_large": "Tệp quá lớn (tối đa 64 KB mỗi tệp). Chưa có thay đổi nào.",
    },
    "en": {
        "cert_title": "Receipt signing certificate",
        "cert_current": "Certificate in use",
        "cert_none": "The agency has no certificate yet. Receipts cannot be signed.",
        "cert_unreadable": "The current certificate file cannot be read. Upload a replacement.",
        "cert_subject": "Subject",
        "cert_tax_code": "Tax code (in the subject)",
        "cert_issuer": "Issuer",
        "cert_serial": "Serial number",
        "cert_not_before": "Valid from (Vietnam time)",
        "cert_not_after": "Valid until (Vietnam time)",
        "cert_fingerprint": "SHA-256 fingerprint",
        "cert_days_left": "Days left",
        "cert_state_valid": "Valid.",
        "cert_state_expiring": "The certificate expires soon ({days} days left). Upload a new one before it expires.",
        "cert_state_expired": (
            "THE CERTIFICATE HAS EXPIRED. Receipts signed with it have no legal value. Upload a new one now."
        ),
        "cert_state_not_yet_valid": "The certificate is not valid yet.",
        "cert_tax_code_differs": "The certificate's tax code ({found}) is not the agency's ({agency}).",
        "cert_replace": "Replace the certificate",
        "cert_replace_intro": (
            "Upload a .p12/.pfx file with its password, or a PEM certificate with its PEM private key. Each file "
            "{kb} KB at most. The certificate must carry the agency's tax code, be valid today and use an RSA key of "
            "2048 bits or more. Receipts signed with the earlier certificate still verify."
        ),
        "cert_read_only": "Only administrators may replace the certificate.",
        "cert_p12_legend": "PKCS#12 file (.p12 or .pfx)",
        "cert_p12_file": ".p12/.pfx file",
        "cert_p12_password": "The file's password",
        "cert_pem_legend": "PEM certificate and private key",
        "cert_pem_cert": "Certificate file (PEM)",
        "cert_pem_key": "Private key file (PEM)",
        "cert_pem_password": "The private key's password (if any)",
        "cert_upload": "Upload and replace",
        "cert_replaced_done": "The certificate is replaced. New receipts are signed with it.",
        "cert_refused_wrong_password": "The password is wrong (or the file is damaged). Nothing was changed.",
        "cert_refused_not_certificate": "The file is not a certificate. Nothing was changed.",
        "cert_refused_p12_incomplete": (
            "The .p12 file must hold a private key and its certificate. Nothing was changed."
        ),
        "cert_refused_not_key": "The key file is not a PEM private key. Nothing was changed.",
        "cert_refused_not_rsa": "The private key must be an RSA key. Nothing was changed.",
        "cert_refused_weak_key": "The RSA key is too short: 2048 bits at least. Nothing was changed.",
        "cert_refused_key_mismatch": "The private key does not belong to this certificate. Nothing was changed.",
        "cert_refused_wrong_tax_code": "The certificate's tax code is not this agency's. Nothing was changed.",
        "cert_refused_expired": "The certificate has expired. Nothing was changed.",
        "cert_refused_not_yet_valid": "The certificate is not valid yet. Nothing was changed.",
        "cert_refused_file_missing": "No file was chosen. Nothing was changed.",
        "cert_refused_write_failed": (
            "The certificate could not be saved on the server. Receipts are still signed with the earlier one. "
            "Tell the system administrators."
        ),
        "cert_refused_too_large": "The file is too large (64 KB per file at most). Nothing was changed.",
    },
}
