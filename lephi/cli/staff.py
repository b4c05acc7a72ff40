"""``lephi staff`` (accounts of the console) and ``lephi audit`` (the audit chains)."""

from __future__ import annotations

from typing import Annotated

import typer

from lephi.cli.common import context

staff = typer.Typer(help="Staff accounts of the console.", no_args_is_help=True, rich_markup_mode=None)


def _mail(settings: object, to: str, url: str, hours: int, kind: str) -> None:
    """Mail the link too when a mail server is configured; the printed link stays the one that always works."""
    from console.config import ConsoleSettings
    from console.mail import MailConfigError, link_mail, mailer_for, send_quietly

    if not isinstance(settings, ConsoleSettings) or settings.mail_backend != "smtp":
        return
    try:
        sent = send_quietly(mailer_for(settings), link_mail(to, url, hours, kind))
    except MailConfigError as exc:
        typer.echo(f"warning: the link was not mailed: {exc}", err=True)
        return
    typer.echo(
        f"mailed to {to}" if sent else "warning: the link could not be mailed; hand it over yourself", err=not sent
    )


audit = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True, rich_markup_mode=None)


@staff.command("create")
def staff_create(
    email: Annotated[str, typer.Option(help="The person's email address (their sign-in name).")],
    role: Annotated[str, typer.Option(help="province_admin, agency_admin, finance, approver or viewer.")],
    agency: Annotated[str | None, typer.Option(help="Agency code; none for a province_admin.")] = None,
) -> None:
    """Create a staff account and print its one-time set-password link (valid 72 hours)."""
    from console.staff.service import StaffError, create_staff, set_password_url

    ctx = context()
    try:
        with ctx.db.write() as s:
            user, token = create_staff(s, email=email, role=role, agency_code=agency)
    except StaffError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        ctx.close()
    url = set_password_url(ctx.settings.public_url, token)
    typer.echo(f"created {user.role.value} {user.email} ({user.id})")
    typer.echo(f"set-password link (valid 72 hours, once): {url}")
    _mail(ctx.settings, user.email, url, 72, "set")


@staff.command("reset-password")
def staff_reset_password(email: Annotated[str, typer.Option(help="The account's email address.")]) -> None:
    """Print a one-time password-reset link (valid 24 hours); earlier open links stop working."""
    from console.staff.service import StaffError, issue_reset, set_password_url

    ctx = context()
    try:
        with ctx.db.write() as s:
            user, token = issue_reset(s, email)
    except StaffError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        ctx.close()
    url = set_password_url(ctx.settings.public_url, token)
    typer.echo(f"reset link for {user.email} (valid 24 hours, once): {url}")
    _mail(ctx.settings, user.email, url, 24, "reset")


@audit.command("verify")
def audit_verify(
    agency: Annotated[str | None, typer.Option(help="Only this agency's chain (default: every chain).")] = None,
) -> None:
    """Recompute the audit chains: exit 0 with the number of rows checked, or 1 naming the first broken row."""
    from sqlalchemy import select
    from sqlmodel import col

    from console.audit.service import verify
    from payments.agency.models import Agency

    ctx = context()
    try:
        with ctx.db.read() as s:
            agency_id = None
            if agency is not None:
                agency_id = s.execute(select(col(Agency.id)).where(col(Agency.code) == agency)).scalar_one_or_none()
                if agency_id is None:
                    typer.echo(f"error: no agency with code {agency!r}", err=True)
                    raise typer.Exit(2)
            result = verify(s, agency_id, only_scope=agency is not None)
    finally:
        ctx.close()
    if result.broken is not None:
        b = result.broken
        row = f"row {b.id}" if b.id else "the end of the chain"
        typer.echo(f"broken: {row}, seq {b.seq}, scope {b.scope}: {b.reason}", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {result.rows} audit row(s) in {result.scopes} chain(s) verified")
