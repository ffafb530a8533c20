"""`largo` command line: one module per subcommand, each with `register(subparsers)`.

User mistakes raise `LargoError` anywhere below; here they become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import functools
import importlib
import sys
from typing import NoReturn

from largo.cli.ranges import checked_types
from largo.errors import LargoError

# A full disk, a quota, a read-only folder: the machine, not a bug, so one line instead of a traceback.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
# A path that cannot be used as given (a folder that cannot be created, a file where a folder should be): the
# user's to fix, so one line and exit code 2, as for any other bad argument.
PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


class Parser(argparse.ArgumentParser):
    """argparse with largo's one-line errors (argparse prints the whole usage block before its message)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"largo: error: {message} (see: {self.prog} --help)\n")


# Subcommand modules (largo.cli.<name>); each defines register(subparsers) and sets `func` on its parser.
COMMANDS = ("demo", "train", "distill", "autoencoder", "sample", "edit", "checkpoints", "eval", "classifier", "viz",
            "report", "sweep", "export", "ema", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="largo", description="Class-conditional diffusion models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"largo.cli.{name}").register(sub)
    checked_types(parser)
    return parser


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The parser, built once per process: parsing leaves it unchanged, and in-process callers (tests, notebooks)
    call `main` many times."""
    return build_parser()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a flag refused with its one line: the code, returned like any other
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LargoError as e:
        print(f"largo: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS | PATH_ERRNOS:
            raise
        print(f"largo: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
        return 2 if e.errno in PATH_ERRNOS else 1
    except KeyboardInterrupt:
        print("largo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
