"""The README's action reference is generated from the catalogue and must not drift from it."""

from pathlib import Path

from pytest_lava.actions import registry
from pytest_lava.jobs.reference import actions_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_action_reference_is_current() -> None:
    text = README.read_text()
    begin = text.index("<!-- actions:begin")
    begin = text.index("\n", begin) + 1
    end = text.index("<!-- actions:end -->")
    assert text[begin:end].strip() == actions_markdown().strip(), (
        "README action reference is stale: regenerate it with python -m pytest_lava.jobs.reference")


def test_every_builtin_action_is_documented() -> None:
    text = README.read_text()
    names = set(registry())
    assert len(names) >= 16
    for name in names:
        assert f"`{name}`" in text
