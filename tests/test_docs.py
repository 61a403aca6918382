"""The README's configuration table is the one the settings models generate."""

from __future__ import annotations

from pathlib import Path

from streampod.configref import update_readme

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_config_table_matches_the_settings_models():
    text = README.read_text()
    assert update_readme(text) == text, "run: streampod config --update README.md"
