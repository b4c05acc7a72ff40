"""A small SMTP server on a thread, enough for smtplib (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT): the console's
SMTP mailer is tested against a real socket conversation, and what arrives is parsed back into a message."""

from __future__ import annotations

import base64
import socketserver
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    auth: str | None


@dataclass
class Mailbox:
    mails: list[Received] = field(default_factory=list)
    credentials: tuple[str, str] | None = None


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        box = self.server.box
        sender, recipients, auth = "", [], None
        self.reply("220 test ESMTP")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            verb = line[:4].upper()
            if verb in {"EHLO", "HELO"}:
                self.reply("250-test")
                self.reply("250 AUTH PLAIN")
            elif verb == "AUTH":
                # AUTH PLAIN <base64 of authzid NUL user NUL password>
                _, user, password = base64.b64decode(line.split()[2]).decode().split("\0")
                if box.credentials is not None and (user, password) != box.credentials:
                    self.reply("535 authentication failed")
                    continue
                auth = user
                self.reply("235 ok")
            elif verb == "MAIL":
                sender = line.split(":", 1)[1].strip().strip("<>").split(">")[0]
                recipients = []
                self.reply("250 ok")
            elif verb == "RCPT":
                recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                data = b""
                while True:
                    chunk = self.rfile.readline()
                    if chunk in {b".\r\n", b".\n", b""}:
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                message = message_from_bytes(data, policy=policy.default)
                assert isinstance(message, EmailMessage)
                box.mails.append(Received(sender, recipients, message, auth))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    box: Mailbox


class SmtpServer:
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.box = Mailbox(credentials=credentials)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def mails(self) -> list[Received]:
        return self.server.box.mails

    def __enter__(self) -> SmtpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
