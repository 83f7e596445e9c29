"""The distribution: a name that is ours on PyPI, and the files a wheel must carry."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_distribution_is_not_the_unrelated_pypi_cmot():
    # PyPI's "cmot" (1.1.3) is another package: `pip install -U cmot` would replace ours
    assert PROJECT["name"] == "cmot-ot"
    assert "cmot" in PYPROJECT["tool"]["setuptools"]["package-data"]


def test_wheel_carries_license_and_py_typed():
    assert PROJECT["license"] == "MIT"
    for name in PROJECT["license-files"]:
        assert (ROOT / name).is_file(), name
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["cmot"]
    assert (ROOT / "python" / "cmot" / "py.typed").is_file()


def test_python_versions_match_what_ci_tests():
    # CI's two lanes: Python 3.11 (Debian 12) and 3.13 (Debian 13)
    assert PROJECT["requires-python"] == ">=3.11"
    classifiers = set(PROJECT["classifiers"])
    assert {"Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.13"} <= classifiers


def test_citation_names_the_paper():
    cff = (ROOT / "CITATION.cff").read_text()
    assert "10.1186/s13059-023-02989-8" in cff
    assert f"version: {PROJECT['version']}" in cff


def test_version_is_declared_once_in_step():
    import cmot

    assert cmot.__version__ == PROJECT["version"]
