"""mDNS discovery: the manager advertises the bus (never a password) and a
worker without ``EMBEDFLEET_REDIS_URL`` finds it within 5 s, here on this
host and across two network namespaces joined by a veth pair."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.discovery import advertise, find_redis_url, url_from_service, url_without_password
from bus.settings import RedisSettings

ROOT = Path(__file__).resolve().parent.parent


def test_url_without_password_keeps_everything_else() -> None:
    s = RedisSettings.from_url("rediss://alice:s3cret@db.lan:6380/2")
    assert url_without_password(s) == "rediss://alice@db.lan:6380/2"
    assert url_without_password(RedisSettings.from_url("redis://:pw@127.0.0.1:6379/0")) == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("url", ["redis://:pw@10.0.0.1:6379/0", "redis://user:pw@h:1/0", "redis://user:@h:1/0"])
def test_advertise_refuses_a_password(url: str) -> None:
    with pytest.raises(ValueError, match="password"):
        advertise(url)


def test_advertise_refuses_unix_sockets() -> None:
    with pytest.raises(ValueError, match="redis://"):
        advertise("unix:///run/redis.sock")


def test_the_finder_substitutes_the_announced_address_for_loopback() -> None:
    props = {"v": "1", "url": "redis://127.0.0.1:6379/3", "ns": "embedfleet"}
    assert url_from_service(props, ["10.1.2.3"], 6390) == "redis://10.1.2.3:6390/3"
    named = {**props, "url": "rediss://bob@redis.lan:6379/0"}
    assert url_from_service(named, ["10.1.2.3"], 6379) == "rediss://bob@redis.lan:6379/0"
    assert url_from_service({**props, "url": "redis://:pw@10.0.0.1:6379/0"}, ["10.0.0.1"], 6379) is None
    assert url_from_service({**props, "v": "2"}, ["10.1.2.3"], 6379) is None
    assert url_from_service(props, [], 6379) is None


def test_a_worker_finds_the_advertised_bus_on_this_host() -> None:
    ns = "disc-" + secrets.token_hex(3)
    with advertise("redis://127.0.0.1:6399/0", namespace=ns, api_url="http://127.0.0.1:8377"):
        t0 = time.monotonic()
        url = find_redis_url(timeout_s=5.0, namespace=ns)
        took = time.monotonic() - t0
    assert url is not None and url.endswith(":6399/0") and took < 5.0
    assert find_redis_url(timeout_s=0.5, namespace=ns + "-absent") is None


# -- two network namespaces ------------------------------------------------
ADVERTISER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from bus.discovery import advertise
with advertise("redis://127.0.0.1:6390/0", namespace="netns"):
    print("advertising", flush=True)
    time.sleep(float(sys.argv[2]))
"""
FINDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from bus.discovery import find_redis_url
t0 = time.monotonic()
url = find_redis_url(timeout_s=5.0, namespace="netns")
print(url, round(time.monotonic() - t0, 2))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN) and iproute2's `ip`")
    tag = secrets.token_hex(3)
    a, b = f"efa-{tag}", f"efb-{tag}"
    try:
        _ip("netns", "add", a)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot create a network namespace here (no CAP_NET_ADMIN?): {e.stderr.decode().strip()}")
    try:
        _ip("netns", "add", b)
        _ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        _ip("link", "set", f"va{tag}", "netns", a)
        _ip("link", "set", f"vb{tag}", "netns", b)
        # A private /30 that exists only inside the two namespaces.
        _ip("-n", a, "addr", "add", "10.203.7.1/30", "dev", f"va{tag}")
        _ip("-n", b, "addr", "add", "10.203.7.2/30", "dev", f"vb{tag}")
        for ns, dev in ((a, f"va{tag}"), (b, f"vb{tag}")):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], timeout=10, capture_output=True)  # removes the veth too


def test_discovery_across_two_network_namespaces(two_namespaces: tuple[str, str]) -> None:
    a, b = two_namespaces
    adv = subprocess.Popen(
        ["ip", "netns", "exec", a, sys.executable, "-c", ADVERTISER, str(ROOT), "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert adv.stdout is not None and adv.stdout.readline().strip() == "advertising"
        found = subprocess.run(
            ["ip", "netns", "exec", b, sys.executable, "-c", FINDER, str(ROOT)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        adv.kill()
        adv.wait(10)
    assert found.returncode == 0, found.stderr
    url, took = found.stdout.split()
    assert url == "redis://10.203.7.1:6390/0"  # the advertiser's address on the /30, not its loopback
    assert float(took) < 5.0
