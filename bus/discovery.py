"""Zero-config discovery of the bus over mDNS (DNS-SD), with ``zeroconf``.

The manager advertises a ``_embedfleet._tcp.local.`` service whose SRV
record points at Redis and whose TXT record carries ``v`` (1), ``url`` (the
Redis URL **without** any password), ``ns`` (the namespace) and ``api``
(the dashboard URL, when one is served). A worker started without
``EMBEDFLEET_REDIS_URL`` calls ``find_redis_url()``, which browses for the
service and returns a URL within the timeout (5 s by default), or ``None``.

When the advertised URL names a loopback or wildcard host (the manager's
Redis seen from the manager), the finder puts the address the service was
announced on in its place. The password never travels over mDNS: workers
take it from ``EMBEDFLEET_REDIS_PASSWORD``. ``advertise`` refuses a URL
that holds one.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bus.constants import DEFAULT_NAMESPACE
from bus.settings import RedisSettings

log = logging.getLogger("embedfleet.discovery")

SERVICE_TYPE = "_embedfleet._tcp.local."
TXT_VERSION = "1"


def url_without_password(settings: RedisSettings) -> str:
    """The settings' Redis URL with the user name kept and the password dropped."""
    scheme = "rediss" if settings.ssl else "redis"
    user = f"{settings.username}@" if settings.username else ""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{scheme}://{user}{host}:{settings.port}/{settings.db}"


def _is_local_host(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def local_ipv4_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this host (loopback if there is none)."""
    import ifaddr

    found = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback
    ]
    return found or ["127.0.0.1"]


class Advertisement:
    """A registered service; ``close()`` (or leaving ``with``) withdraws it."""

    def __init__(self, zc: Any, info: Any) -> None:
        self.zc = zc
        self.info = info

    def close(self) -> None:
        if self.zc is not None:
            try:
                self.zc.unregister_service(self.info)
            finally:
                self.zc.close()
                self.zc = None

    def __enter__(self) -> Advertisement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def advertise(
    redis_url: str,
    port: int | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    api_url: str | None = None,
    addresses: list[str] | None = None,
    instance: str | None = None,
) -> Advertisement:
    """Announce the bus on the local network; refuses a URL with a password."""
    from zeroconf import ServiceInfo, Zeroconf

    u = urlsplit(redis_url)
    if u.password is not None:
        raise ValueError("refusing to advertise a Redis URL that holds a password")
    if u.scheme not in ("redis", "rediss"):
        raise ValueError(f"only redis:// and rediss:// URLs can be advertised, not {u.scheme}://")
    port = port or u.port or 6379
    addrs = addresses or local_ipv4_addresses()
    host = socket.gethostname().split(".")[0] or "embedfleet"
    name = instance or f"embedfleet-{namespace}-{host}-{uuid.uuid4().hex[:6]}"
    props = {"v": TXT_VERSION, "url": redis_url, "ns": namespace, "api": api_url or ""}
    info = ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        port=port,
        properties=props,
        server=f"{host}-{uuid.uuid4().hex[:6]}.local.",
        parsed_addresses=addrs,
    )
    zc = Zeroconf()
    try:
        zc.register_service(info, allow_name_change=True)
    except BaseException:
        zc.close()
        raise
    log.info("advertising the bus over mDNS as %s on %s", name, ", ".join(addrs))
    return Advertisement(zc, info)


def _decode(props: dict[Any, Any]) -> dict[str, str]:
    out = {}
    for k, v in props.items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        out[key] = v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))
    return out


def _reachable_first(addresses: list[str]) -> list[str]:
    """Addresses on one of this host's own networks first (docker bridges and
    other hosts' private networks are often announced too)."""
    import ifaddr

    nets = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                nets.append(ipaddress.ip_network(f"{ip.ip}/{ip.network_prefix}", strict=False))
    return sorted(addresses, key=lambda a: not any(ipaddress.ip_address(a) in n for n in nets))


def url_from_service(props: dict[str, str], addresses: list[str], port: int) -> str | None:
    """The Redis URL a worker should use for one advertisement."""
    if props.get("v") != TXT_VERSION or not props.get("url"):
        return None
    u = urlsplit(props["url"])
    if u.password is not None:
        return None  # never use (or pass on) a password heard over the network
    host = u.hostname
    if _is_local_host(host):
        if not addresses:
            return None
        host = addresses[0]
    shown = f"[{host}]" if host and ":" in host else host
    user = f"{u.username}@" if u.username else ""
    return urlunsplit((u.scheme, f"{user}{shown}:{port or u.port or 6379}", u.path or "/0", "", ""))


def find_redis_url(timeout_s: float = 5.0, namespace: str | None = None) -> str | None:
    """Browse for an advertised bus; its Redis URL, or ``None`` after the timeout."""
    from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

    found: list[str] = []
    done = threading.Event()
    deadline = time.monotonic() + timeout_s

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        if state_change is not ServiceStateChange.Added or done.is_set():
            return
        wait_ms = int(max(0.1, deadline - time.monotonic()) * 1000)
        info = zeroconf.get_service_info(service_type, name, timeout=wait_ms)
        if info is None:
            return
        props = _decode(info.properties or {})
        if namespace is not None and props.get("ns") != namespace:
            return
        v4 = _reachable_first([a for a in info.parsed_addresses() if ":" not in a])
        url = url_from_service(props, v4, info.port or 0)
        if url is not None:
            found.append(url)
            done.set()

    zc = Zeroconf()
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        done.wait(timeout_s)
        browser.cancel()
    finally:
        zc.close()
    if found:
        log.info("found the bus over mDNS: %s", found[0])
    return found[0] if found else None
