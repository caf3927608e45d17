"""Comments and docstrings name no file outside this repository: a reader of the code cannot
open the design contract, so the rule is stated where it applies (or a file in docs/ is
named). Markdown docs follow the same rule."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Spelled in parts so that this file does not name it: the file, and its sections ("§4").
NAMES_OF_IT = ("DESIGN" + ".md", "DESIGN" + " §")
SKIPPED_FOLDERS = {".git", ".venv", "node_modules", "var"}


def _files(suffix: str) -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob(f"*{suffix}"))
        if not SKIPPED_FOLDERS.intersection(path.relative_to(ROOT).parts)
    ]


def _naming_it(files: list[Path]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if any(name in line for name in NAMES_OF_IT)
    ]


def test_python_files_name_no_file_outside_the_repository():
    files = _files(".py")
    assert len(files) > 200  # the walk found the source tree
    assert _naming_it(files) == []


def test_markdown_docs_send_no_reader_to_a_file_outside_the_repository():
    assert _naming_it(_files(".md")) == []


# A repository file named in backquotes: `slots/admin.py`, `helm/petpro-booking/values.yaml`.
FILE_NAMED = re.compile(
    r"`([A-Za-z0-9_][A-Za-z0-9_./-]*/[A-Za-z0-9_./-]*\.(?:py|md|yaml|yml|json|toml|lua|tpl|txt|html))`"
)


def test_every_file_the_docs_name_exists():
    """README and docs/ send readers to files by path; a moved or misnamed one (the admin's
    access rules were once cited under slots/) leaves them looking for nothing. `core/...` and
    `events/...` are the project package's own short forms."""
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            for named in FILE_NAMED.findall(line):
                places = (ROOT / named, doc.parent / named, ROOT / "petpro_booking" / named)
                if not any(place.exists() for place in places):
                    missing.append(f"{doc.relative_to(ROOT)}:{number}: {named}")
    assert missing == []
