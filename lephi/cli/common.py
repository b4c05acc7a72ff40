"""What every ``lephi`` command starts from."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lephi.container import Container


def context() -> Container:
    # Imported here, not at the top: the container brings the whole application (SQLAlchemy, the models, lxml),
    # which ``lephi --help`` and a mistyped option should not wait for.
    from lephi.container import build_container
    from lephi.settings import get_settings
    from payments.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return build_container(settings)
