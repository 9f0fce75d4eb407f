"""``lowbit serve``: the HTTP API (FastAPI + uvicorn; OpenAPI at /docs)."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from lowbit.hwsim.errors import LowbitError

HELP = "serve the HTTP API: simulate, start and follow searches, fetch reports (docs at /docs)"

_LOOPBACK_NAMES = ("localhost",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' (needed to bind a non-loopback address; "
        "default: $LOWBIT_TOKEN)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where searches and their results live (default $LOWBIT_CACHE/service)",
    )
    parser.add_argument(
        "--max-running", type=int, default=1, help="searches running at once (default 1)"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts local connections (127.0.0.0/8, ::1, localhost)."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_state_dir() -> Path:
    root = os.environ.get("LOWBIT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "lowbit"
    return base / "service"


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("LOWBIT_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise LowbitError(
            f"--host {args.host} is reachable from other machines: give --token (or set "
            "LOWBIT_TOKEN) so requests must authenticate"
        )
    if not 0 < args.port < 65536:
        raise LowbitError(f"--port must be 1-65535, got {args.port}")
    if args.max_running < 1:
        raise LowbitError(f"--max-running must be >= 1, got {args.max_running}")
    import uvicorn

    from lowbit.hwsim.fileio import check_output_dir
    from lowbit.service import create_app

    state_dir = check_output_dir(args.state_dir or default_state_dir(), flag="--state-dir")
    app = create_app(state_dir=state_dir, token=token, max_running=args.max_running)
    print(f"lowbit serve: http://{args.host}:{args.port} (docs at /docs), state in {state_dir}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
