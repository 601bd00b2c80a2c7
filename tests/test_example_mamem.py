"""Smoke test of examples/mamem_ssvep.py: one epoch on a slice of one subject, with one
covariance per window (the default) and with one per time segment."""

import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, os.pardir, "shared", "data", "mamem-ssvep-2")


@pytest.mark.skipif(not os.path.isfile(os.path.join(DATA, "U001.mat")),
                    reason="MAMEM-SSVEP-II data folder not found")
@pytest.mark.parametrize("segments", [1, 3])
def test_mamem_ssvep_runs(tmp_path, segments):
    for extra in ("scipy", "tqdm", "matplotlib"):
        pytest.importorskip(extra)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import mamem_ssvep
    finally:
        sys.path.pop(0)
    status = mamem_ssvep.main(["--data-dir", DATA, "--subjects", "U001", "--epochs", "1",
                               "--limit", "40", "--bn", "aim", "--segments", str(segments),
                               "--out", str(tmp_path)])
    assert status == 0
    for suffix in ("csv", "json", "png"):
        assert (tmp_path / f"mamem_ssvep.{suffix}").is_file()
    result = json.loads((tmp_path / "mamem_ssvep.json").read_text())
    subject = result["subjects"]["aim"]["U001"]
    assert subject["epoch"] == 1
    for key in ("validation_accuracy", "test_accuracy"):
        assert math.isfinite(subject[key]) and 0.0 <= subject[key] <= 1.0
    mean = result["rows"][0][1]
    assert math.isfinite(mean) and 0.0 <= mean <= 1.0
