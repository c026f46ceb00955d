"""Measured results live in docs/results/, each page written by a tools/ script: the page names an
existing script, and the figures the README quotes from a page appear in it."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "results").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_results_page_names_the_script_that_wrote_it(page):
    found = re.search(r"Written by `python (tools/\S+\.py)", page.read_text(encoding="utf-8"))
    assert found and (ROOT / found.group(1)).is_file(), f"{page.name} must start with the tools/ command that wrote it"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_readme_quotes_a_results_page_only_with_figures_it_holds(page):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    link = f"docs/results/{page.name}"
    assert link in readme, f"README does not link {link}"
    for paragraph in (p for p in readme.split("\n\n") if link in p):
        cited = re.findall(r"docs/results/([\w.-]+\.md)", paragraph)  # the pages this paragraph quotes
        text = "".join((ROOT / "docs" / "results" / name).read_text(encoding="utf-8") for name in set(cited))
        figures = re.findall(r"\d+\.\d{4}(?: ± \d+\.\d{4})?", paragraph)
        missing = [f for f in figures if f not in text]
        assert not missing, f"README quotes {missing} beside {', '.join(cited)}, which hold no such figure: rerun the script and quote it"
