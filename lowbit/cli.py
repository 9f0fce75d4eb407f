"""The ``lowbit`` command: a table of subcommands, each in its own module.

Errors caused by input (``LowbitError``) print as one line and exit with code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lowbit.hwsim.errors import LowbitError

from . import __version__

#: subcommand -> module under lowbit.commands (registered in one place)
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "profiles": "profiles",
    "simulate": "simulate",
    "sweep": "sweep",
    "train": "train",
    "models": "models_cmd",
    "evaluate": "evaluate",
    "search": "search",
    "report": "report",
    "serve": "serve",
    "export": "export",
    "validate": "validate",
    "calibrate-host": "calibrate_host",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowbit",
        description="Hardware/model co-design for low-bit neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"lowbit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"lowbit.commands.{module_name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def one_line(message: str) -> str:
    """``message`` as one printable line: line breaks and control characters (a file's keys
    and values quoted in an error can hold any) are escaped as in a Python string."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except LowbitError as exc:
        print(f"lowbit: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lowbit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
