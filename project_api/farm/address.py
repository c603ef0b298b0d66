"""``HOST:PORT`` addresses of the tracker and the board servers."""

from __future__ import annotations

from typing import NamedTuple

from . import FarmError


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, what: str = "--rpc-tracker") -> Address:
    """``HOST:PORT`` (IPv6 as ``[::1]:9190``) or raise FarmError in one line."""
    host, sep, port = str(text).strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FarmError(f"{what} {text!r}: give HOST:PORT, e.g. 127.0.0.1:9190")
    return Address(host, int(port))
