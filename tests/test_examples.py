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


@pytest.mark.parametrize("module, argv, message", [
    ("japanese_vowels", ["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    ("japanese_vowels", ["--seed", "-3"], "--seed: must be in 0 .. 2**32 - 1, got -3"),
    ("japanese_vowels", ["--batch-size", "1"], "--batch-size: must be at least 2, got 1"),
    ("japanese_vowels", ["--device", "nonsense"], "--device: Expected one of"),
    ("grassmann_digits", ["--subspace-dim", "20"], "--subspace-dim 20 exceeds --features 16"),
    ("grassmann_digits", ["--lr", "-0.1"], "--lr: must be finite and >= 0, got -0.1"),
    ("hyperbolic_tree", ["--lr", "0"], "--lr: must be > 0, got 0"),
    ("hyperbolic_tree", ["--depth", "two"], "--depth: invalid integer >= 1 value: 'two'"),
    ("mamem_ssvep", ["--shrinkage", "1.5"], "--shrinkage: must be in [0, 1], got 1.5"),
    ("mamem_ssvep", ["--band", "30", "10"], "--band 30 10: need 0 <= LOW < HIGH < 62.5 Hz"),
    ("mamem_ssvep", ["--weight-decay", "nan"], "--weight-decay: must be finite and >= 0, got nan"),
])
def test_bad_arguments_exit_with_a_message(module, argv, message, capsys):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    main = __import__(module).main
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--out", "unused"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unavailable_device_is_refused():
    pytest.importorskip("tqdm")
    import argparse

    import torch

    import common

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    with pytest.raises(argparse.ArgumentTypeError, match="no cuda device is available here"):
        common.device_name("cuda")
    assert common.device_name("cpu") == "cpu"
