"""``streampod rollout``: subcommands for blue/green releases."""

from __future__ import annotations

import sys

from . import compare


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "compare":
        print("usage: streampod rollout compare [options]   (see: streampod rollout compare --help)", file=sys.stderr)
        return 2
    return compare.main(args[1:])
