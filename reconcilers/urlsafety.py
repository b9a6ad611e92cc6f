"""Which callback URLs the sender may POST to (a guard against server-side request forgery).

A workflow's author chooses ``spec.callback.url``; the controller POSTs from inside the cluster. So the
sender resolves the host and refuses (never retries) a URL whose host resolves to:

* a **cloud metadata** address (169.254.169.254, fd00:ec2::254, Alibaba's 100.100.100.200) or any
  **link-local** address (169.254.0.0/16, fe80::/10): always, unless the address lies inside a network
  the operator listed explicitly in ``allowed_cidrs``;
* an unspecified or multicast address: always (nothing to talk to);
* a **loopback or private** (non-global) address when ``allow_private_networks`` is False;
* anything outside ``allowed_cidrs`` when that list is non-empty (checked in addition to the above).

Every address the name resolves to must pass (an attacker controlling DNS could otherwise mix one good
address in). IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry. Only ``http`` and
``https`` URLs are accepted.

The check runs twice: :func:`check_url` on the URL before the request (every resolved address), and
:func:`checked_adapter`, a ``requests`` transport adapter that checks the address each new connection
actually reached, before a byte of the request is sent (the name is resolved again when connecting:
DNS may have changed in between - "DNS rebinding"). A connection refused there raises
:class:`PeerRefused` inside the ``requests`` exception; :func:`peer_refusal` digs it out.

Not guaranteed: through an HTTP(S) proxy (``HTTP_PROXY``/``HTTPS_PROXY`` in the environment) the
connection goes to the proxy, which resolves the name itself; only :func:`check_url` applies then.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

__all__ = [
    "METADATA_ADDRESSES",
    "IPAddress",
    "IPNetwork",
    "PeerRefused",
    "UrlPolicy",
    "UrlRefused",
    "UrlUnresolvable",
    "check_url",
    "checked_adapter",
    "classify",
    "peer_refusal",
    "redact",
    "refusal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
})


class UrlRefused(Exception):
    """The URL must not be used: a permanent verdict (the sender drops the event, never retries)."""


class UrlUnresolvable(Exception):
    """The host did not resolve now (DNS trouble): worth retrying later."""


@dataclass(frozen=True)
class UrlPolicy:
    #: May URLs resolve to loopback and private (non-global) addresses? Default True.
    allow_private_networks: bool = True
    #: If non-empty, every resolved address must lie in one of these; an address inside one of them
    #: is also "explicitly allowed" even if it is link-local or a metadata address.
    allowed_cidrs: tuple[IPNetwork, ...] = ()


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def classify(address: IPAddress) -> str:
    """One of ``metadata``, ``link-local``, ``unspecified``, ``multicast``, ``loopback``, ``private``,
    ``public``."""
    a = _unmapped(address)
    if a in METADATA_ADDRESSES:
        return "metadata"
    if a.is_link_local:
        return "link-local"
    if a.is_unspecified:
        return "unspecified"
    if a.is_multicast:
        return "multicast"
    if a.is_loopback:
        return "loopback"
    if not a.is_global:
        return "private"
    return "public"


def refusal(address: IPAddress, policy: UrlPolicy) -> str | None:
    """Why ``address`` is refused under ``policy``, or None if it may be used."""
    a = _unmapped(address)
    explicit = any(a in net for net in policy.allowed_cidrs)
    if policy.allowed_cidrs and not explicit:
        return f"{a} is outside allowedCIDRs"
    kind = classify(a)
    if kind in ("metadata", "link-local") and not explicit:
        return f"{a} is a {kind} address"
    if kind in ("unspecified", "multicast"):
        return f"{a} is a {kind} address"
    if kind in ("loopback", "private") and not policy.allow_private_networks:
        return f"{a} is a {kind} address and private networks are not allowed"
    return None


def redact(url: str) -> str:
    """``scheme://host[:port]/path`` - no user info, query or fragment (they may carry tokens): what logs,
    Events and status may show of a callback URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_url(url: str, policy: UrlPolicy, resolve: Resolver = socket.getaddrinfo) -> tuple[IPAddress, ...]:
    """The addresses ``url``'s host resolves to, all allowed; raises :class:`UrlRefused` (permanent) or
    :class:`UrlUnresolvable` (retry later)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"invalid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"scheme {parts.scheme!r} is not http or https")
    host = parts.hostname
    if not host:
        raise UrlRefused("the URL has no host")
    try:
        addresses: tuple[IPAddress, ...] = (ipaddress.ip_address(host),)
    except ValueError:
        try:
            infos = resolve(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise UrlUnresolvable(f"cannot resolve {host}: {exc}") from exc
        # sockaddr[0] is the address; an IPv6 one may carry a %scope suffix
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))
        if not addresses:
            raise UrlUnresolvable(f"{host} resolved to no address") from None
    for a in addresses:
        why = refusal(a, policy)
        if why:
            raise UrlRefused(f"{host}: {why}")
    return addresses


class PeerRefused(OSError):
    """A new connection reached an address the policy refuses (raised before anything is sent)."""


def _verify_peer(host: str, proxy: object, sock: socket.socket, policy: UrlPolicy) -> None:
    if proxy is not None:
        return  # connected to the proxy, not to the target (see the module docstring)
    try:
        peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
    except (OSError, ValueError):
        return  # not an IP socket (cannot happen for http/https); nothing to judge
    why = refusal(peer, policy)
    if why:
        sock.close()
        raise PeerRefused(f"{host}: connected to {why}")


def checked_adapter(policy: UrlPolicy) -> HTTPAdapter:
    """A ``requests`` adapter (mount it for ``http://`` and ``https://``) whose new connections are
    checked against ``policy`` once connected, before the request is sent."""

    class CheckedHTTPConnection(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            _verify_peer(self.host, self.proxy, sock, policy)
            return sock

    class CheckedHTTPSConnection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            _verify_peer(self.host, self.proxy, sock, policy)
            return sock

    class CheckedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = CheckedHTTPConnection

    class CheckedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = CheckedHTTPSConnection

    class CheckedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": CheckedHTTPPool, "https": CheckedHTTPSPool}

    return CheckedAdapter()


def peer_refusal(exc: BaseException) -> str | None:
    """The :class:`PeerRefused` message somewhere inside a ``requests``/``urllib3`` exception, if any."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, PeerRefused):
            return str(e)
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None
