"""Smoke tests of the example scripts: one short run each on a slice of their data."""

import json
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def results(out, name):
    data = json.loads((out / f"{name}.json").read_text())
    assert (out / f"{name}.csv").exists() and (out / f"{name}.png").exists()
    return data


def test_japanese_vowels(tmp_path):
    pytest.importorskip("aeon")
    pytest.importorskip("pyriemann")
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    import japanese_vowels

    code = japanese_vowels.main(["--epochs", "1", "--limit", "60", "--bn", "bw", "--out", str(tmp_path)])
    assert code == 0
    rows = results(tmp_path, "japanese_vowels")["rows"]
    assert len(rows) == 1 and 0.0 <= rows[0][1] <= 1.0


def test_grassmann_digits(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    import grassmann_digits

    assert grassmann_digits.main(["--epochs", "1", "--seeds", "1", "--out", str(tmp_path)]) == 0
    rows = results(tmp_path, "grassmann_digits")["rows"]
    assert [r[0] for r in rows] == ["grassmann", "softmax"]
    assert all(0.5 < r[1] <= 1.0 for r in rows)  # one epoch already learns the digits


def test_hyperbolic_tree(tmp_path):
    pytest.importorskip("scipy")
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    import hyperbolic_tree

    code = hyperbolic_tree.main(["--epochs", "20", "--depth", "2", "--out", str(tmp_path)])
    assert code == 0
    rows = results(tmp_path, "hyperbolic_tree")["rows"]
    assert all(0.0 < r[1] <= 1.0 for r in rows)
    assert (tmp_path / "hyperbolic_tree_disk.png").exists()
