"""A non-editable install carries every file regd needs: each file under regd/ that is
not Python (the web interface's templates and static files) matches a ``package_data``
pattern of setup.cfg, and MANIFEST.in takes it into the source distribution."""

from __future__ import annotations

import configparser
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _data_files() -> list[Path]:
    return sorted(
        p.relative_to(ROOT)
        for p in (ROOT / "regd").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


def test_package_data_covers_every_file_that_is_not_python() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    patterns = {
        package.replace(".", "/"): [g for g in globs.split() if g]
        for package, globs in setup["options.package_data"].items()
    }
    files = _data_files()
    assert any(f.suffix == ".html" for f in files) and any(f.suffix == ".js" for f in files)
    for path in files:
        covered = [
            package
            for package, globs in patterns.items()
            if path.is_relative_to(package)
            and any(fnmatch.fnmatch(str(path.relative_to(package)), g) for g in globs)
        ]
        assert covered, f"{path} is in no package_data pattern of setup.cfg"


def test_manifest_takes_every_data_directory() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text()
    for directory in sorted({str(p.parent) for p in _data_files()}):
        assert f"recursive-include {directory} " in manifest, directory
