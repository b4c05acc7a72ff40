"""The console's mail: the SMTP mailer talks to a real SMTP server (a small one on a thread, tests/console/
smtp_server.py) and the message arrives, Vietnamese first, with the link; the password comes from ``${NAME}`` or a
file; a server that refuses is a MailError, not a crash; the log mailer writes the link to the log; a forgotten
password through the sign-in page ends in a real mail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient

from console.config import ConsoleSettings
from console.mail import LogMailer, MailConfigError, MailError, SmtpMailer, link_mail, mail_password, mailer_for
from lephi.container import Container
from payments.core.logging import configure_logging
from tests.conftest import Cli
from tests.console.conftest import MakeStaff, csrf_of
from tests.console.smtp_server import SmtpServer

URL = "http://testserver/console/set-password/abc"


def test_smtp_mailer_delivers_a_bilingual_mail_with_login() -> None:
    with SmtpServer(credentials=("mailer", "s3cret")) as server:
        mailer = SmtpMailer(
            "127.0.0.1", server.port, "Lephi <no-reply@tinh.gov.vn>", "mailer", "s3cret", starttls=False
        )
        mailer.send(link_mail("ke.toan@stp.gov.vn", URL, 24, "reset"))
    [mail] = server.mails
    assert mail.recipients == ["ke.toan@stp.gov.vn"] and mail.auth == "mailer"
    assert mail.sender == "no-reply@tinh.gov.vn"
    body = mail.message.get_content()
    assert URL in body
    assert body.index("Có yêu cầu đặt lại mật khẩu") < body.index("A password reset was asked")
    assert "đặt lại mật khẩu" in str(mail.message["Subject"])


def test_smtp_mailer_refused_login_and_unreachable_server_raise_mail_error() -> None:
    with SmtpServer(credentials=("mailer", "right")) as server:
        wrong = SmtpMailer("127.0.0.1", server.port, "x@y.vn", "mailer", "wrong", starttls=False)
        with pytest.raises(MailError):
            wrong.send(link_mail("a@b.vn", URL, 24, "set"))
        port = server.port
    assert server.mails == []
    with pytest.raises(MailError):
        SmtpMailer("127.0.0.1", port, "x@y.vn", starttls=False, timeout=2).send(link_mail("a@b.vn", URL, 24, "set"))


def test_password_from_environment_reference_or_file(tmp_path: Path) -> None:
    settings = ConsoleSettings(mail_backend="smtp", mail_password="${MAIL_PW}")
    assert mail_password(settings, {"MAIL_PW": "from-env"}) == "from-env"
    with pytest.raises(MailConfigError):
        mail_password(settings, {})
    secret = tmp_path / "mail-password"
    secret.write_text("from-file\n")
    assert mail_password(ConsoleSettings(mail_password_file=secret)) == "from-file"
    with pytest.raises(MailConfigError):
        mail_password(ConsoleSettings(mail_password_file=tmp_path / "missing"))
    assert mail_password(ConsoleSettings(mail_password="plain")) == "plain"
    assert isinstance(mailer_for(ConsoleSettings()), LogMailer)
    assert isinstance(mailer_for(ConsoleSettings(mail_backend="smtp")), SmtpMailer)


def test_log_mailer_logs_the_link_and_production_log_backend_warns() -> None:
    # The suite's apps log at WARNING; the link is logged at INFO.
    configure_logging("INFO")
    try:
        with structlog.testing.capture_logs() as logs:
            LogMailer().send(link_mail("a@b.vn", URL, 72, "set"))
    finally:
        configure_logging("WARNING")
    assert any(e["event"] == "console.mail" and URL in e["body"] and e["log_level"] == "info" for e in logs)

    class Production(ConsoleSettings):
        env: str = "production"

    with structlog.testing.capture_logs() as logs:
        Production()
        Production(mail_backend="smtp")
    assert [e["event"] for e in logs] == ["settings.mail_backend_log"]


def test_forgot_password_mail_arrives_through_smtp(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("quen@agc-a.gov.vn")
    with SmtpServer() as server:
        client.app.state.console_mailer = SmtpMailer("127.0.0.1", server.port, "no-reply@tinh.gov.vn", starttls=False)  # type: ignore[attr-defined]
        page = client.get("/console/forgot?lang=en")
        response = client.post(
            "/console/forgot",
            data={"email": staff.email.upper(), "csrf": csrf_of(page.text), "lang": "en"},
            follow_redirects=False,
        )
        assert response.status_code == 303
    [mail] = server.mails
    assert mail.recipients == [staff.email]
    link = re.search(r"http://testserver/console/set-password/\S+", mail.message.get_content())
    assert link
    assert client.get(link.group(0).replace("http://testserver", "") + "?lang=en").status_code == 200


def test_cli_create_prints_and_mails_the_link_through_the_configured_server(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpServer(credentials=("mailer", "pw-from-env")) as server:
        for name, value in {
            "LEPHI_MAIL_BACKEND": "smtp",
            "LEPHI_MAIL_HOST": "127.0.0.1",
            "LEPHI_MAIL_PORT": str(server.port),
            "LEPHI_MAIL_STARTTLS": "false",
            "LEPHI_MAIL_USER": "mailer",
            "LEPHI_MAIL_PASSWORD": "${TEST_SMTP_PW}",
            "TEST_SMTP_PW": "pw-from-env",
            "LEPHI_MAIL_FROM": "Lephi <no-reply@tinh.gov.vn>",
        }.items():
            monkeypatch.setenv(name, value)
        result = cli("staff", "create", "--agency", "AGC-A", "--role", "viewer", "--email", "moi@agc-a.gov.vn")
    assert result.exit_code == 0, result.output
    printed = re.search(r"(http://\S+/console/set-password/\S+)", result.stdout)
    assert printed and "mailed to moi@agc-a.gov.vn" in result.stdout
    [mail] = server.mails
    assert mail.auth == "mailer" and printed.group(1) in mail.message.get_content()
