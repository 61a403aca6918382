"""The README's replay, exactly as a data scientist types it: ``streampod run --input file: --output file:``.

Three real processes over HTTP, a JSON-lines file in and out, no broker (issue 2, item 4).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "app_template/python/samples.jsonl"


def streampod_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streampod", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_readme_replay_writes_outputs_and_dead_letters_with_reasons(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = streampod_run(
        "--app",
        str(REPO / "app_template/python/app.py"),
        "--input",
        f"file:{SAMPLES}",
        "--output",
        f"file:{out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"replayed samples.jsonl: 10 output(s) in {out}, 2 dead letter(s)" in done.stdout

    samples = [orjson.loads(line) for line in SAMPLES.read_bytes().splitlines()]
    outputs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    good = [s for s in samples if s["key"] not in ("u8", "u9")]
    # One partition (a file): the outputs come in input order, each keyed as its input.
    assert [o["key"] for o in outputs] == [s["key"] for s in good]
    assert [o["value"]["amount"] for o in outputs] == [s["value"]["amount"] for s in good]
    assert all(o["value"]["amount_usd"] >= 0 and "flagged" in o["value"] for o in outputs)

    dead = {
        d["key"]: d for d in map(orjson.loads, out.with_name("out.jsonl.deadletter.jsonl").read_bytes().splitlines())
    }
    assert set(dead) == {"u8", "u9"}
    # The payload is kept byte for byte, and the reason names the field or the error.
    assert dead["u8"]["value"] == next(s["value"] for s in samples if s["key"] == "u8")
    reasons = {k: " ".join(v for h, v in d["headers"].items() if "error" in h) for k, d in dead.items()}
    assert "amount" in reasons["u8"], reasons
    assert "KeyError: 'JPY'" in reasons["u9"], reasons


def test_a_missing_input_file_is_refused_with_its_path(tmp_path: Path) -> None:
    done = streampod_run(
        "--input", f"file:{tmp_path / 'nope.jsonl'}", "--output", f"file:{tmp_path / 'o.jsonl'}", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "no such input file" in done.stderr and "nope.jsonl" in done.stderr
    assert not (tmp_path / "o.jsonl").exists()
