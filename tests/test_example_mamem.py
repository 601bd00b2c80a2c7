"""Smoke test of examples/mamem_ssvep.py: one epoch on a slice of the data, with one covariance
per window (the default), with one per time segment, with training crops, with session
statistics, one network for two subjects (the default) or one each; the crops' recordings
rebuild the trials; the per-subject copies share every weight but the batch norms'; the
snapshot ensemble averages the epochs ranked best on validation."""

import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, os.pardir, "shared", "data", "mamem-ssvep-2")


needs_data = pytest.mark.skipif(not os.path.isfile(os.path.join(DATA, "U001.mat")),
                                reason="MAMEM-SSVEP-II data folder not found")


def _example():
    for extra in ("scipy", "tqdm", "matplotlib"):
        pytest.importorskip(extra)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import mamem_ssvep
    finally:
        sys.path.pop(0)
    return mamem_ssvep


@needs_data
def test_crops_come_from_the_recordings_of_the_training_trials():
    import argparse

    import numpy as np
    import torch

    example = _example()
    raw, labels = example.load_subject(DATA, "U001")
    args = argparse.Namespace(band=(4.0, 45.0))
    trials, scale = example.prepare(raw, args)
    crops = example.Crops(raw[:300], labels[:300], scale, args)
    assert crops.recordings.shape == (75, 8, 500)
    for k in (0, 7, 74):
        for j in range(4):
            np.testing.assert_array_equal(crops.recordings[k][:, 125 * j:125 * (j + 1)],
                                          raw[4 * k + j])
    x, y = crops.draw(torch.Generator().manual_seed(0), torch.float64, "cpu")
    assert x.shape == (300, 8, 125)
    np.testing.assert_array_equal(y.numpy(), np.repeat(labels[:300:4], 4))
    # a window at an offset that is a trial boundary is that trial, filtered and scaled alike
    window = example.filtered(crops.recordings[3][None, :, 250:375], args) / scale
    np.testing.assert_allclose(window[0], trials[14], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="share a label"):
        example.Crops(raw[1:301], labels[1:301], scale, args)


@needs_data
@pytest.mark.parametrize("segments, option", [(1, None), (3, None), (1, "--crops"),
                                             (1, "--adapt"), (1, "--no-pooled")])
def test_mamem_ssvep_runs(tmp_path, segments, option):
    mamem_ssvep = _example()
    subjects = ["U001", "U002"] if option in (None, "--no-pooled") else ["U001"]
    status = mamem_ssvep.main(["--data-dir", DATA, "--subjects", *subjects, "--epochs", "1",
                               "--limit", "40", "--bn", "aim", "--segments", str(segments),
                               "--out", str(tmp_path)] + ([option] if option else []))
    assert status == 0
    for suffix in ("csv", "json", "png"):
        assert (tmp_path / f"mamem_ssvep.{suffix}").is_file()
    result = json.loads((tmp_path / "mamem_ssvep.json").read_text())
    assert sorted(result["subjects"]["aim"]) == subjects
    for subject in result["subjects"]["aim"].values():
        assert subject["epoch"] == 1
        for key in ("validation_accuracy", "test_accuracy"):
            assert math.isfinite(subject[key]) and 0.0 <= subject[key] <= 1.0
    mean = result["rows"][0][1]
    assert math.isfinite(mean) and 0.0 <= mean <= 1.0


def _small_model(example):
    """A small float64 model of the example (AIM batch norm), seeded."""
    import argparse

    import torch

    args = argparse.Namespace(feature_maps=6, hidden=4, segments=1, maps=5, kernel=9,
                              front="spatial", shrinkage=0.0)
    torch.manual_seed(0)
    return example.make_model("aim", args, dtype=torch.float64)


def test_session_statistics_normalise_by_the_trials_and_leave_the_model_alone():
    import torch

    example = _example()
    model = _small_model(example)
    x = torch.randn(20, 8, 125, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = example.session_logits(model, x, adapt=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    plain = example.session_logits(model, x, adapt=False)
    assert not model.training and not torch.allclose(adapted, plain)
    # the same as evaluating with every batch norm on the statistics of these trials
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean, layer.running_var = None, None
        if hasattr(layer, "track_running_stats"):
            layer.track_running_stats = False
    with torch.no_grad():
        torch.testing.assert_close(model(x), adapted)


def test_per_subject_copies_share_all_but_the_batch_norms():
    import torch

    from riemtorch import nn as rnn

    example = _example()
    model = _small_model(example)
    first, second = example.per_subject_copies(model, 2)
    norms = (torch.nn.BatchNorm2d, rnn.SPDBatchNorm)
    private = [name for name, m in model.named_modules() if isinstance(m, norms)]
    assert len(private) == 3
    for (name, a), (_, b), (_, c) in zip(model.named_modules(), first.named_modules(),
                                         second.named_modules()):
        if name in private:
            assert a is not b and b is not c, name
            assert all(p is not q for p, q in zip(b.parameters(), c.parameters()))
        elif not a._modules and not any(name.startswith(f"{n}.") for n in private):
            assert a is b is c, name
    copies = torch.nn.ModuleList([first, second])
    owned = {id(p) for p in model.parameters() if not any(
        p is q for m in model.modules() if isinstance(m, norms) for q in m.parameters())}
    shared = owned & {id(p) for p in copies.parameters()}
    assert len(shared) == len(owned) > 0
    # a training step through one copy moves its own statistics and the shared weights only
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (first, second)]
    first.train()
    first(torch.randn(6, 8, 125, dtype=torch.float64)).sum().backward()
    after = [m.state_dict() for m in (first, second)]
    changed = [[k for k in b if not torch.equal(b[k], a[k])] for b, a in zip(before, after)]
    assert any("running" in k for k in changed[0]) and not changed[1]
    assert all(p.grad is None for m in second.modules() if isinstance(m, norms)
               for p in m.parameters())
    assert all(p.grad is not None for p in first.parameters())


def test_snapshot_accuracy_averages_the_probabilities_of_the_first_ranked_epochs():
    import torch

    example = _example()
    labels = torch.tensor([0, 1, 1])
    # epoch 0 gets trial 2 wrong, epoch 1 trial 1, epoch 2 every trial
    epochs = [torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
              torch.tensor([[0.6, 0.4], [0.9, 0.1], [0.1, 0.9]]),
              torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1]])]
    probs = {"test": epochs}
    assert example.snapshot_accuracy(probs, [0, 1, 2], 1, labels, "test") == 2 / 3
    # mean of epochs 0 and 1: [[.75, .25], [.55, .45], [.35, .65]] -> trial 1 wrong
    assert example.snapshot_accuracy(probs, [0, 1, 2], 2, labels, "test") == 2 / 3
    # mean of epochs 1 and 0 (same set) and of all three
    assert example.snapshot_accuracy(probs, [1, 0, 2], 2, labels, "test") == 2 / 3
    assert example.snapshot_accuracy(probs, [2, 1, 0], 3, labels, "test") == 1 / 3
    # k beyond the number of epochs takes them all
    assert example.snapshot_accuracy(probs, [1], 5, labels, "test") == 2 / 3
    assert example.snapshot_accuracy(probs, [2, 1, 0], 1, labels, "test") == 0.0


@needs_data
def test_snapshots_are_the_epochs_with_the_best_validation_accuracy(tmp_path):
    mamem_ssvep = _example()
    status = mamem_ssvep.main(["--data-dir", DATA, "--subjects", "U001", "--epochs", "3",
                               "--limit", "40", "--snapshots", "2", "--out", str(tmp_path)])
    assert status == 0
    subject = json.loads((tmp_path / "mamem_ssvep.json").read_text())["subjects"]["aim"]["U001"]
    curves = subject["curves"]
    key = {e: (-curves["eval_accuracy"][e - 1], curves["validation_loss"][e - 1]) for e in (1, 2, 3)}
    assert subject["snapshot_epochs"] == sorted(key, key=key.get)[:2]
    assert subject["epoch"] == subject["snapshot_epochs"][0]
    assert subject["best_epoch_test_accuracy"] == curves["test_accuracy"][subject["epoch"] - 1]
