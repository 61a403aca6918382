"""``streampod config``: the configuration reference, generated from the settings models.

The README's table is this command's output; a test checks the two agree.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streampod.settings import AppSettings, InputReaderSettings, OutputWriterSettings, describe

SECTIONS = (
    ("input-reader", InputReaderSettings),
    ("app", AppSettings),
    ("output-writer", OutputWriterSettings),
)


def markdown() -> str:
    out = []
    for title, model in SECTIONS:
        out += [f"### {title}", "", "| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, typ, default, doc in describe(model):
            cell = typ.replace("|", "\\|")
            # One table cell: a docstring wrapped over lines is joined, a pipe would end the cell.
            text = " ".join(doc.split()).replace("|", "/")
            out.append(f"| `{name}` | {cell} | `{default}` | {text} |")
        out.append("")
    return "\n".join(out)


START, END = "<!-- config:start -->", "<!-- config:end -->"


def update_readme(text: str) -> str:
    """``text`` with the part between the config markers replaced by the current reference."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{markdown()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streampod config", description=__doc__)
    parser.add_argument("--update", type=Path, metavar="README", help="rewrite the table in this file")
    args = parser.parse_args(argv)
    if args.update:
        args.update.write_text(update_readme(args.update.read_text()))
    else:
        print(markdown())
    return 0
