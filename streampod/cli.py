"""The ``streampod`` command: one subcommand per container, and the tools around them."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand -> (module, function, help). Imported lazily: each container image installs
# only its own extras, so the reader must not import FastAPI's app runtime, and so on.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "input-reader": ("streampod.input_reader.service", "main", "run the input reader container"),
    "app": ("streampod.app.service", "main", "run the app container (the user's code behind contract v1)"),
    "output-writer": ("streampod.output_writer.service", "main", "run the output writer container"),
    "run": ("streampod.run", "main", "run a whole stage locally: demo on a local broker, or file replay"),
    "kafka": ("streampod.localkafka", "main", "start a local single-node Kafka broker"),
    "config": ("streampod.configref", "main", "print the configuration reference"),
    "new": ("streampod.scaffold", "main", "create a project for one stage from a template (python, sklearn, pyspark)"),
    "measure": ("streampod.measure", "main", "time an app's start-up and per-batch latency (to size its probes)"),
    "bench": ("streampod.bench.cli", "main", "benchmark against the per-message baseline, the in-process limit, Quix"),
    "rollout": ("streampod.rollout.cli", "main", "blue/green tools: compare the candidate with the active colour"),
    "release": ("streampod.release", "main", "the blue/green release pipeline's steps: plan, candidate, compare, ..."),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="streampod", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_) in _COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not args or args[0] not in _COMMANDS:
        parser.print_help()
        return 0 if args and args[0] in ("-h", "--help") else 2
    module, func, _ = _COMMANDS[args[0]]
    entry = getattr(importlib.import_module(module), func)
    return int(entry(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
