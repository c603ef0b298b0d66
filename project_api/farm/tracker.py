"""The client's view of TVM's RPC tracker: is it there, which board servers are registered and free
under a key, and a session to one free board, each within a time bound.

TVM's ``TrackerSession`` retries a refused connection for 60 s and waits forever for a request to
be served; here every call is bounded: the tracker is checked with a 2 s handshake first, and a
request for a board is only made when the tracker counts one free (its socket has a timeout, so
a board taken by another client in between costs at most ``timeout_sec``).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Dict, Iterator, List, Tuple

from . import FarmError
from .address import Address
from .processes import tracker_answers

TRACKER_TIMEOUT_SEC = 10.0  # one tracker round trip (summary, request) on a loaded machine


def _unreachable(address: Address) -> FarmError:
    return FarmError(f"cannot reach an RPC tracker at {address}: start one there "
                     f"(python -m project_api.farm tracker --host {address.host} --port {address.port}) "
                     "or fix --rpc-tracker")


@contextlib.contextmanager
def tracker_session(address: Address, timeout_sec: float = TRACKER_TIMEOUT_SEC) -> Iterator[object]:
    """A ``tvm.rpc.TrackerSession`` whose socket times out; FarmError when no tracker answers."""
    if not tracker_answers(address):
        raise _unreachable(address)
    from tvm import rpc

    tracker = rpc.TrackerSession((address.host, address.port))
    try:
        tracker._sock.settimeout(timeout_sec)  # bounded round trips (TVM has no option for it)
        yield tracker
    except (OSError, RuntimeError) as err:
        if isinstance(err, FarmError):
            raise
        raise FarmError(f"the RPC tracker at {address} stopped answering: {err}") from None
    finally:
        tracker.close()


def summary(address: Address) -> dict:
    with tracker_session(address) as tracker:
        return tracker.summary()


def registered_servers(address: Address, key: str) -> List[Tuple[str, int]]:
    """The (host, port) of every board server registered under ``key`` (free or busy)."""
    info = summary(address)
    return [(entry["addr"][0], int(entry["addr"][1])) for entry in info.get("server_info", [])
            if entry.get("key") == f"server:{key}"]


def free_count(address: Address, key: str) -> int:
    return int(summary(address).get("queue_info", {}).get(key, {}).get("free", 0))


def keys(address: Address) -> Dict[str, dict]:
    """Every key the tracker knows, with its free and pending counts."""
    return dict(summary(address).get("queue_info", {}))


def check_key(address: Address, key: str) -> None:
    """FarmError in one line when no board server is registered under ``key``."""
    if not registered_servers(address, key):
        known = sorted(keys(address))
        raise FarmError(f"the RPC tracker at {address} has no board under key {key!r}"
                        + (f"; its keys: {', '.join(known)}" if known else "; no board is registered yet")
                        + " (start one: python -m project_api.farm serve --tracker ... --key ... --board ...)")


def request_board(address: Address, key: str, timeout_sec: float = TRACKER_TIMEOUT_SEC):
    """A TVM RPC session to one free board server under ``key``, or None when none is free now."""
    from tvm import rpc

    if free_count(address, key) < 1:
        return None
    if not tracker_answers(address):
        raise _unreachable(address)
    tracker = rpc.TrackerSession((address.host, address.port))
    try:
        tracker._sock.settimeout(timeout_sec)
        # max_retry=1: TVM's retry reconnects on a socket without our timeout. A server that died
        # a moment ago fails this request; the caller asks again and gets the next free one.
        return tracker.request(key, priority=1, session_timeout=0, max_retry=1)
    except (RuntimeError, OSError, socket.timeout):
        return None  # taken by another client, or gone: the caller asks again later
    finally:
        tracker.close()
