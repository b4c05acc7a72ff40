"""Mail from the console: a ``Mailer`` sends one message, in Vietnamese then English.

``LogMailer`` (development, ``LEPHI_MAIL_BACKEND=log``) writes the message, link included, to the log at INFO;
``SmtpMailer`` (``smtp``) hands it to a mail server with the standard library's smtplib, after STARTTLS unless
``LEPHI_MAIL_STARTTLS=false``, signing in when a user is set. The password is never in the settings' text itself
when it is a ``${NAME}`` reference (the environment variable NAME) or lives in ``LEPHI_MAIL_PASSWORD_FILE``."""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from fastapi import Request

from console.config import ConsoleSettings
from console.context import console_settings
from payments.core.logging import get_logger

log = get_logger(__name__)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MailConfigError(ValueError):
    """A mail password that names an unset environment variable or an unreadable file."""


class MailError(Exception):
    """The mail server refused the message or could not be reached."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, mail: Mail) -> None: ...


class LogMailer:
    """Development: the message goes to the log, where the developer copies the link from."""

    def send(self, mail: Mail) -> None:
        # A logger looked up now follows the logging configuration in force now. The body names the recipient: this
        # backend is for development, where the developer needs the link and whose it is.
        get_logger(__name__).info("console.mail", subject=mail.subject, body=mail.body)


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout

    def send(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2].strip("> ") or None)
        message.set_content(mail.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            # No recipient in the log: an address is personal data (the log's redaction hides ``email`` keys too).
            log.error("console.mail_failed", host=self.host, error=str(exc))
            raise MailError(str(exc)) from exc
        log.info("console.mail_sent", subject=mail.subject)


def mail_password(settings: ConsoleSettings, env: Mapping[str, str] | None = None) -> str | None:
    """The SMTP password: from its file, or the setting with ``${NAME}`` references replaced."""
    if settings.mail_password_file is not None:
        try:
            return settings.mail_password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MailConfigError(f"cannot read LEPHI_MAIL_PASSWORD_FILE: {exc}") from exc
    if settings.mail_password is None:
        return None
    environ = os.environ if env is None else env

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise MailConfigError(f"environment variable {name} (used in LEPHI_MAIL_PASSWORD) is not set")
        return environ[name]

    return _VAR.sub(sub, settings.mail_password)


def mailer_for(settings: ConsoleSettings) -> Mailer:
    if settings.mail_backend == "log":
        return LogMailer()
    return SmtpMailer(
        settings.mail_host,
        settings.mail_port,
        settings.mail_from,
        user=settings.mail_user,
        password=mail_password(settings),
        starttls=settings.mail_starttls,
        timeout=settings.mail_timeout_seconds,
    )


def mailer_of(request: Request) -> Mailer:
    """The app's mailer, made from the settings on first use (a test may put its own in ``app.state``)."""
    state = request.app.state
    mailer: Mailer | None = getattr(state, "console_mailer", None)
    if mailer is None:
        mailer = mailer_for(console_settings(request.app.state.ctx.settings))
        state.console_mailer = mailer
    return mailer


def send_quietly(mailer: Mailer, mail: Mail) -> bool:
    """Send, and say whether it went; a failure is logged (by the mailer) instead of raised."""
    try:
        mailer.send(mail)
    except (MailError, MailConfigError) as exc:
        log.error("console.mail_not_sent", error=str(exc))
        return False
    return True


def link_mail(to: str, url: str, hours: int, purpose: str) -> Mail:
    """The mail carrying a set-password (``set``) or reset (``reset``) link, Vietnamese first."""
    if purpose == "set":
        subject = "Lephi: đặt mật khẩu tài khoản / set your account's password"
        vi = f"Một tài khoản trang quản trị Lephi đã được tạo cho {to}. Đặt mật khẩu tại:"
        en = f"A Lephi staff console account was created for {to}. Set its password at:"
    else:
        subject = "Lephi: đặt lại mật khẩu / reset your password"
        vi = f"Có yêu cầu đặt lại mật khẩu cho tài khoản {to}. Đặt mật khẩu mới tại:"
        en = f"A password reset was asked for the account {to}. Set a new password at:"
    body = (
        f"{vi}\n{url}\n"
        f"Đường dẫn dùng được một lần, trong {hours} giờ. Nếu bạn không yêu cầu, hãy bỏ qua thư này.\n\n"
        f"{en}\n{url}\n"
        f"The link works once, for {hours} hours. If you did not ask for it, ignore this mail.\n"
    )
    return Mail(to, subject, body)
