"""The examples in docs/ run: Python blocks as doctests, scenarios through the engine."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
import yaml

from accord.billing.engine import run_billing
from accord.billing.scenario import parse_scenario

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_examples_in_docs_run(page: Path) -> None:
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_scenario_examples_in_docs_bill(page: Path) -> None:
    for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S):
        if "accord_scenario:" in block:
            run_billing(parse_scenario(yaml.safe_load(block)))


def test_scenario_format_page_shows_the_real_output_of_its_example() -> None:
    import json

    from accord.billing.scenario import run_to_json

    text = (DOCS / "scenario-format.md").read_text()
    scenario = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)[0]
    shown = json.loads(re.findall(r"```json\n(.*?)```", text, flags=re.S)[0])
    assert run_to_json(run_billing(parse_scenario(yaml.safe_load(scenario)))) == shown
