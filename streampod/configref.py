"""``streampod config``: the configuration reference, generated from the settings models.

The README's table is this command's output; a test checks the two agree.
"""

from __future__ import annotations

import argparse

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
            out.append(f"| `{name}` | {cell} | `{default}` | {doc.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="streampod config", description=__doc__).parse_args(argv)
    print(markdown())
    return 0
