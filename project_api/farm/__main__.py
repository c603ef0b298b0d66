"""``python -m project_api.farm serve|tracker|status``: the farm's command line (docs/farm.md).

Bad input (unreachable tracker, unknown board or key) prints one line ``farm: error: ...`` and
exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from . import FarmError


def _tracker(args) -> int:
    try:
        import tornado  # noqa: F401
    except ImportError:
        raise FarmError("TVM's RPC tracker needs tornado: pip install tornado") from None
    # TVM's tracker itself, on exactly the address asked for (its --port-end is exclusive).
    argv = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", args.host, "--port", str(args.port),
            "--port-end", str(args.port + 1)]
    sys.stdout.flush()
    os.execv(sys.executable, argv)
    return 0  # not reached


def _status(args) -> int:
    from .address import parse_address
    from .tracker import summary

    info = summary(parse_address(args.tracker, "--tracker"))
    queues = info.get("queue_info", {})
    servers = info.get("server_info", [])
    if not queues and not servers:
        print("no board registered")
    for key in sorted(queues):
        addresses = [f"{s['addr'][0]}:{s['addr'][1]}" for s in servers if s.get("key") == f"server:{key}"]
        print(f"{key}: {queues[key].get('free', 0)} free of {len(addresses)}, {queues[key].get('pending', 0)} "
              f"requests waiting; servers {', '.join(addresses) or '-'}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from .board import add_serve_arguments, serve

    parser = argparse.ArgumentParser(prog="python -m project_api.farm", description="the board farm (docs/farm.md)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    serve_parser = sub.add_parser("serve", help="register one board with the RPC tracker and serve it")
    add_serve_arguments(serve_parser)
    serve_parser.set_defaults(run=serve)
    tracker_parser = sub.add_parser("tracker", help="run TVM's RPC tracker (python -m tvm.exec.rpc_tracker)")
    tracker_parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    tracker_parser.add_argument("--port", type=int, default=9190, help="port to listen on (default 9190)")
    tracker_parser.set_defaults(run=_tracker)
    status_parser = sub.add_parser("status", help="the keys, free boards and servers the tracker knows")
    status_parser.add_argument("--tracker", required=True, metavar="HOST:PORT")
    status_parser.set_defaults(run=_status)
    args = parser.parse_args(argv)
    try:
        status = int(args.run(args) or 0)
    except FarmError as err:
        print(f"farm: error: {err}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    if args.command == "serve":
        # TVM's listen thread is not a daemon and never returns: end the process here (serve has
        # stopped everything it started).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
