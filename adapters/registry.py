"""Finds gateway adapters by name: the built-in ones and third-party ones declared in the ``lephi.gateways``
entry-point group (``[project.entry-points."lephi.gateways"] mygateway = "pkg.module:Factory"``)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from adapters.base import GatewayContext, PaymentGateway

ENTRY_POINT_GROUP = "lephi.gateways"

Factory = Callable[[GatewayContext], PaymentGateway]


def _builtin() -> dict[str, Factory]:
    from adapters.momo import MoMoGateway
    from adapters.sandbox import SandboxGateway
    from adapters.stripe import StripeGateway
    from adapters.vietqr import VietQRGateway
    from adapters.vnpay import VNPayGateway
    from adapters.zalopay import ZaloPayGateway

    return {
        "sandbox": SandboxGateway,
        "stripe": StripeGateway,
        "vnpay": VNPayGateway,
        "momo": MoMoGateway,
        "vietqr": VietQRGateway,
        "zalopay": ZaloPayGateway,
    }


def discover() -> dict[str, Factory]:
    """Built-in adapters, then installed entry points; a name is taken by the first that declares it."""
    found: dict[str, Factory] = dict(_builtin())
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            found[ep.name] = ep.load()
    return found


ContextFor = Callable[[str, str | None], GatewayContext]
# What the service reads off an adapter besides its methods; ``PaymentGateway`` gives subclasses the defaults.
DECLARED = ("pushes_funds", "starts_offline")


def _declared(name: str, adapter: PaymentGateway) -> PaymentGateway:
    """The adapter, if it says how it behaves. One written before these attributes existed (neither subclassing
    ``PaymentGateway`` nor setting them) is refused as not configured, with the fix named, rather than failing on
    its first callback."""
    missing = [attribute for attribute in DECLARED if not hasattr(adapter, attribute)]
    if missing:
        raise ValueError(
            f"the {name!r} adapter does not declare {', '.join(missing)}: subclass adapters.base.PaymentGateway"
        )
    return adapter


class GatewayRegistry:
    """Builds each adapter once per (gateway, agency), on first use, with the context the service supplies.

    Agencies have their own merchant accounts, so an adapter instance carries one agency's credentials; ``agency``
    None means the gateway's defaults (a gateway with one account for everybody, such as the sandbox)."""

    def __init__(self, factories: dict[str, Factory], context_for: ContextFor) -> None:
        self._factories = factories
        self._context_for = context_for
        self._built: dict[tuple[str, str | None], PaymentGateway] = {}
        self._overrides: dict[str, PaymentGateway] = {}

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def get(self, name: str, agency: str | None = None) -> PaymentGateway:
        if name in self._overrides:
            return self._overrides[name]
        key = (name, agency)
        if key not in self._built:
            if name not in self._factories:
                raise KeyError(name)
            self._built[key] = _declared(name, self._factories[name](self._context_for(name, agency)))
        return self._built[key]

    def factory(self, name: str) -> object:
        """What builds the named adapter (usually its class), or the adapter itself when a test replaced it."""
        if name in self._overrides:
            return self._overrides[name]
        return self._factories[name]

    def context(self, name: str, agency: str | None = None) -> GatewayContext:
        return self._context_for(name, agency)

    def override(self, name: str, gateway: PaymentGateway) -> None:
        """Replace an adapter for every agency (used by tests to inject faults at the Protocol boundary)."""
        self._factories.setdefault(name, lambda _ctx: gateway)
        self._overrides[name] = gateway
