"""Where a webhook may be sent: the address policy that keeps client endpoint URLs out of the service's own network
(server-side request forgery).

A URL is checked when it is registered and again at every delivery. At delivery the host name is resolved once, every
address is checked, and the request goes to a checked address, the name travelling only as ``Host`` and as the TLS
server name; a DNS answer that changes between the check and the connection (rebinding) therefore changes nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from payments.core.config import Environment, PaymentSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}
# Well-known web ports; any other needs LEPHI_WEBHOOK_ALLOWED_PORTS.
_PORTS = frozenset({443, 8443})
_PORTS_OUTSIDE_PRODUCTION = frozenset({80, 8080})

# Cloud instance metadata services hand out credentials: never a target, whatever the operator lists.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "169.254.169.123",  # AWS time
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public address)
        "192.0.0.192",  # Oracle Cloud, older instances
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS DNS over IPv6
        "fd20:ce::254",  # GCP over IPv6
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# Names that only mean something inside a network (RFC 6761, RFC 6762 appendix G, RFC 8375): a public endpoint has
# none of them; a province lists its own in LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS.
_LOCAL_SUFFIXES = frozenset({"internal", "local", "localdomain", "lan", "home", "corp", "intranet", "private", "arpa"})

# The private networks a province may open for its own hosts; every other non-public address stays refused.
_PRIVATE: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_DOCUMENTATION: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
)
# NAT64's well-known prefix is judged by the IPv4 address it carries (on a DNS64 network every IPv4-only host gets
# one); the other IPv6 forms of IPv4 addresses (mapped, compatible, translated, local NAT64, 6to4, Teredo) are refused.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_IN_IPV6: tuple[IPNetwork, ...] = tuple(
    ipaddress.IPv6Network(n)
    for n in ("::ffff:0:0/96", "::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)

_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"({_LABEL}\.)*{_LABEL}")
_INET_PART = re.compile(r"0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*")


class TargetRefused(Exception):
    """The URL's host, address or port is not a place webhooks may go; ``reason`` is safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unresolvable(Exception):
    """The host name has no address now (DNS may change: registration allows it, a delivery retries)."""


@dataclass(frozen=True)
class Policy:
    production: bool
    ports: frozenset[int]
    networks: tuple[IPNetwork, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, settings: PaymentSettings) -> Policy:
        networks: list[IPNetwork] = []
        names: list[str] = []
        for entry in settings.webhook_allowed_private_hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.append(entry)
        production = settings.env is Environment.production
        ports = _PORTS | (frozenset() if production else _PORTS_OUTSIDE_PRODUCTION)
        return cls(production, ports | frozenset(settings.webhook_allowed_ports), tuple(networks), tuple(names))

    def lists_name(self, name: str) -> bool:
        return any(name == e or (e.startswith("*.") and name.endswith(e[1:])) for e in self.names)

    def lists_address(self, ip: IPAddress) -> bool:
        return _within(ip, self.networks)


@dataclass(frozen=True)
class Target:
    scheme: str
    # ASCII, lower case, without a trailing dot; for an address, its canonical form.
    host: str
    port: int
    # Set when the URL names an address (in any notation) rather than a host name.
    address: IPAddress | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """Where one delivery goes: checked addresses, in the resolver's order, and the name to present."""

    target: Target
    addresses: tuple[IPAddress, ...]

    @property
    def server_name(self) -> str | None:
        """The name for TLS (SNI and the certificate check); None when the URL named an address."""
        return self.target.host if self.target.scheme == "https" and self.target.address is None else None


def resolve(name: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``name``, in its order (tests replace this to play DNS)."""
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(name) from exc
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def check_registration(url: str, settings: PaymentSettings) -> None:
    """Refuse a URL that is or resolves to a refused address. A name without an address now is let through: DNS may
    change, and every delivery resolves and checks again."""
    policy = Policy.of(settings)
    target = parse(url, policy)
    try:
        _addresses(target, policy)
    except Unresolvable:
        return


def route(url: str, settings: PaymentSettings) -> Route:
    """Resolve and check the URL's host for one delivery; raises TargetRefused or Unresolvable."""
    policy = Policy.of(settings)
    target = parse(url, policy)
    return Route(target, _addresses(target, policy))


def parse(url: str, policy: Policy) -> Target:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError as exc:
        raise TargetRefused(f"the URL cannot be read ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or (policy.production and scheme != "https"):
        raise TargetRefused(f"the scheme {scheme!r} is not allowed")
    port = DEFAULT_PORTS[scheme] if port is None else port
    if port not in policy.ports:
        allowed = ", ".join(str(p) for p in sorted(policy.ports))
        raise TargetRefused(f"port {port} is not allowed (allowed: {allowed}; others need LEPHI_WEBHOOK_ALLOWED_PORTS)")
    name, address = _normalise(host)
    if address is None:
        _check_name(name, policy)
    return Target(scheme, name, port, address)


def _addresses(target: Target, policy: Policy) -> tuple[IPAddress, ...]:
    if target.address is not None:
        _check_address(target.address, policy, name_listed=False, shown=f"{target.host} is")
        return (target.address,)
    addresses = resolve(target.host, target.port)
    if not addresses:
        raise Unresolvable(target.host)
    listed = policy.lists_name(target.host)
    for ip in addresses:
        # The address is not echoed: it would tell a client what internal names resolve to.
        _check_address(ip, policy, name_listed=listed, shown=f"{target.host} resolves to")
    return tuple(addresses)


def _normalise(host: str) -> tuple[str, IPAddress | None]:
    """The host as the resolver will see it, and its address when it is written as one."""
    if ":" in host:  # only an IPv6 literal keeps a colon in urlsplit's hostname
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetRefused(f"{host!r} is not a valid IPv6 address") from None
        if address.scope_id:
            raise TargetRefused("an IPv6 zone is not allowed")
        return str(address), address
    try:
        name = host.encode("idna").decode("ascii").lower().removesuffix(".")
    except UnicodeError:
        raise TargetRefused(f"{host!r} is not a valid host name") from None
    ipv4 = _ipv4_any_notation(name)
    if ipv4 is not None:
        return str(ipv4), ipv4
    if not _NAME.fullmatch(name) or len(name) > 253:
        raise TargetRefused(f"{host!r} is not a valid host name")
    return name, None


def _ipv4_any_notation(name: str) -> ipaddress.IPv4Address | None:
    """What the C resolver (inet_aton) and the URL standard read as an IPv4 address: one to four parts, each decimal,
    0x hex or 0-prefixed octal, the last filling the remaining bytes (2130706433, 0x7f.1, 0177.0.0.1 and 127.1 are
    all 127.0.0.1). None for a host name; a host ending in a number that is no address is refused."""
    labels = name.split(".")
    if not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", labels[-1]):
        return None
    if len(labels) > 4 or not all(_INET_PART.fullmatch(label) for label in labels):
        raise TargetRefused(f"{name!r} ends in a number but is not an IPv4 address")
    values = [_inet_part(label) for label in labels]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise TargetRefused(f"{name!r} ends in a number but is not an IPv4 address")
    return ipaddress.IPv4Address(sum(v << 8 * (3 - i) for i, v in enumerate(head)) + last)


def _inet_part(label: str) -> int:
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    return int(label, 8) if label.startswith("0") else int(label)


def _check_name(name: str, policy: Policy) -> None:
    if name in METADATA_NAMES or any(name.endswith("." + m) for m in METADATA_NAMES):
        raise TargetRefused(f"{name} is a cloud metadata name")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        raise TargetRefused(f"{name} is a loopback name")
    if policy.lists_name(name):
        return
    if "." not in name or name.rsplit(".", 1)[1] in _LOCAL_SUFFIXES:
        raise TargetRefused(f"{name} is a local network name (see LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS)")


def _check_address(ip: IPAddress, policy: Policy, *, name_listed: bool, shown: str) -> None:
    reason = _refusal(ip, policy, name_listed)
    if reason is not None:
        raise TargetRefused(f"{shown} {reason}")


def _refusal(ip: IPAddress, policy: Policy, name_listed: bool) -> str | None:
    """Why ``ip`` may not be a target, or None. Only loopback (outside production) and the private networks can be
    opened by LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS; what _NEVER lists is refused whatever is listed."""
    if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
        ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.is_loopback:  # before _NEVER: ::1 also counts as reserved
        return None if not policy.production and policy.lists_address(ip) else "a loopback address"
    fixed = next((reason for test, reason in _NEVER if test(ip)), None)
    if fixed is not None:
        return fixed
    if _within(ip, _PRIVATE):
        return None if name_listed or policy.lists_address(ip) else "a private address"
    return None if ip.is_global else "an address that is not public"


def _within(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


_NEVER: tuple[tuple[Callable[[IPAddress], bool], str], ...] = (
    (lambda ip: ip in METADATA_ADDRESSES, "a cloud metadata address"),
    (lambda ip: ip.is_unspecified, "the unspecified address"),
    (lambda ip: _within(ip, _IPV4_IN_IPV6), "an IPv6 form of an IPv4 address"),
    (lambda ip: isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
    (lambda ip: ip.is_link_local, "a link-local address"),
    (lambda ip: ip.is_multicast, "a multicast address"),
    (lambda ip: _within(ip, _DOCUMENTATION), "a documentation address"),
    (lambda ip: ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"), "a reserved address"),
)
