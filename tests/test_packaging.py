"""The Binder environment and the pip package ask for the same things."""

import re

import pytest

from notebooks import ROOT

tomllib = pytest.importorskip("tomllib")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def environment_packages():
    """Conda package names listed in environment.yml (python, pip and the pip: block excluded)."""
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        match = re.match(r"^  - ([A-Za-z0-9_.\-]+)", line)
        if match and match.group(1) not in {"python", "pip"}:
            names.add(_name(match.group(1)))
    return names


def test_environment_has_every_runtime_package():
    runtime, _ = pyproject_packages()
    assert runtime <= environment_packages()


def test_environment_has_nothing_pyproject_does_not_name():
    runtime, dev = pyproject_packages()
    assert environment_packages() <= runtime | dev


def test_environment_installs_llmedu_itself():
    assert re.search(r"^\s+- -e \.$", (ROOT / "environment.yml").read_text(), re.MULTILINE)
