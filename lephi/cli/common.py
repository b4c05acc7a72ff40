"""What every ``lephi`` command starts from."""

from __future__ import annotations

from lephi.container import Container, build_container
from lephi.settings import get_settings
from payments.core.logging import configure_logging


def context() -> Container:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return build_container(settings)
