"""The type checker over src/ (mypy, its default non-strict mode): keeps the declared
contracts honest, e.g. every algorithm module against `seemrl.algos.Algorithm`."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors_in_src():
    api = pytest.importorskip("mypy.api")
    # The settings are pyproject.toml's [tool.mypy]; no cache is written into the tree.
    out, err, code = api.run([str(ROOT / "src" / "seemrl"), "--config-file",
                              str(ROOT / "pyproject.toml"), "--cache-dir", "/dev/null"])
    assert code == 0, out + err
