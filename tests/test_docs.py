"""conf/regd.example.toml, regd/config.py and the README agree.

The example file documents every key: each of its sections and keys is a field of the
configuration's dataclasses and each field is in the file, with the default as its value.
Every ``[section] key`` the README names is a real setting too, and the README's contents
list names every section in order."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from regd.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "conf" / "regd.example.toml"


def _sections() -> dict[str, dict[str, Any]]:
    """Every section of the configuration with its keys and their defaults."""
    defaults = Config()
    sections = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    return {
        name: {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
        for name, section in sections.items()
    }


def test_example_names_every_setting_and_nothing_else() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    settings = _sections()
    assert sorted(example) == sorted(settings)
    for section, keys in settings.items():
        assert sorted(example[section]) == sorted(keys), f"[{section}]"


def test_example_values_are_the_defaults() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    for section, keys in _sections().items():
        for key, default in keys.items():
            assert example[section][key] == default, f"[{section}] {key}"
    assert load_config(EXAMPLE, environ={}) == Config()


def test_readme_names_only_real_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    settings = _sections()
    named = re.findall(r"\[([a-z]+)\] ([a-z_]+)", readme)
    assert named
    for section, key in named:
        assert section in settings, f"README names a section [{section}]"
        assert key in settings[section], f"README names [{section}] {key}"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_contents_lists_every_section_in_order() -> None:
    readme = (ROOT / "README.md").read_text()
    headings = [h for h in re.findall(r"(?m)^## (.*)$", readme) if h != "Contents"]
    contents = readme.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"(?m)^- \[(.*)\]\(#(.*)\)$", contents)
    assert listed == [(h, _anchor(h)) for h in headings]
