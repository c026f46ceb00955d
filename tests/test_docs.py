"""The documentation site: it builds with no warning (a broken link, a page left out of the nav or a
missing anchor fails), and the field references are what the code generates today."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.schema import REFERENCE_KINDS, markdown_reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


@pytest.mark.parametrize("kind", sorted(REFERENCE_KINDS))
def test_the_field_references_are_generated_from_the_code(kind):
    page = ROOT / "docs" / "reference" / f"{kind}-fields.md"
    assert page.read_text(encoding="utf-8") == markdown_reference(kind), \
        f"{page.relative_to(ROOT)} is out of date: run `python -m edgekd.schema` and commit the pages"


def test_the_readme_is_a_front_door_not_a_manual():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250, "README.md grew past a front door: move the detail into docs/"
    for page in ("docs/index.md", "docs/guide/distillation.md", "docs/reference/recipe.md", "docs/guide/gate.md"):
        assert page in readme, f"README does not link {page}"
