"""SPD batch normalisation on MAMEM-SSVEP-II (eight subjects, five flicker frequencies).

Each trial (8 occipital channels x 125 samples, 1 s at 125 Hz) is band-pass filtered and
passed through a linear convolutional front end (MAtt's, Pan et al. 2022: a spatial convolution
to ``--maps`` virtual electrodes, then a temporal convolution to C' channels), pooled into a
C' x C' covariance matrix (or one per time segment, ``--segments``) and classified by
BiMap -> SPDBatchNorm -> ReEig -> LogEig -> Vech -> Linear, trained with RiemannianAdam. Per
subject, trials 0-299 train, 300-399 rank the epochs (validation accuracy, ties broken by the
lower validation loss) and 400-499 are the test trials. The test prediction is the mean of the
class probabilities of the ``--snapshots`` best-ranked epochs of the run (a snapshot ensemble:
no extra training, chosen on validation only; ``--snapshots 1`` is the best epoch alone, whose
test accuracy the table also gives); the table gives the mean and standard deviation (over
subjects) of the test accuracy. The defaults were chosen on the validation accuracy only. The
data are read from ``--data-dir`` (never downloaded).

By default one network is trained on the training trials of all the subjects together, with a
copy of every batch norm per subject (its own statistics, bias and scale; every minibatch holds
one subject's trials): the domain-specific batch norm of SPDDSMBN (Kobler et al. 2022). The
splits, the per-subject ranking of epochs and the test trials stay those above;
``--no-pooled`` trains one network per subject instead.

    python examples/mamem_ssvep.py                 # batch norm under the affine-invariant metric
    python examples/mamem_ssvep.py --bn none       # the same network without the SPD batch norm
    python examples/mamem_ssvep.py --bn lem        # another metric
    python examples/mamem_ssvep.py --compare       # every metric and no batch norm
    python examples/mamem_ssvep.py --snapshots 1   # test at the best validation epoch alone
    python examples/mamem_ssvep.py --no-pooled     # one network per subject
    python examples/mamem_ssvep.py --crops         # train on random 1 s crops of the recordings
    python examples/mamem_ssvep.py --adapt         # each session normalised by its own statistics
"""

import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

from riemtorch import nn as rnn
from riemtorch.optim import RiemannianAdam

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

METRICS = ["none", "aim", "lem", "lcm", "bw", "gbw"]
SUBJECTS = [f"U{i:03d}" for i in range(1, 9)]
# Trials 4k..4k+3 are consecutive windows of one recording, so a trial is 1 s at 125 Hz: on this
# scale the class-averaged spectra of the training trials peak at the flicker frequencies
# (6.66-12 Hz) and their second harmonics; read at 250 Hz they would show no fundamental.
SAMPLING_RATE = 125.0
SPLITS = {"train": slice(0, 300), "validation": slice(300, 400), "test": slice(400, 500)}
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                            "shared", "data", "mamem-ssvep-2")


def load_subject(data_dir: str, subject: str):
    """Trials ``(500, 8, 125)`` float64 and labels ``(500,)`` 0..4 of one subject."""
    from scipy.io import loadmat

    path = os.path.join(data_dir, f"{subject}.mat")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: pass --data-dir (the folder of U001.mat ...)")
    mat = loadmat(path)
    return np.asarray(mat["x_test"], dtype=np.float64), np.asarray(mat["y_test"]).ravel().astype(int)


def bandpass(x: np.ndarray, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the last axis (``low = 0``: low-pass only)."""
    from scipy.signal import butter, sosfiltfilt

    nyquist = SAMPLING_RATE / 2
    if low > 0:
        sos = butter(order, [low / nyquist, high / nyquist], btype="bandpass", output="sos")
    else:
        sos = butter(order, high / nyquist, btype="lowpass", output="sos")
    return sosfiltfilt(sos, x, axis=-1)


def filtered(x: np.ndarray, args) -> np.ndarray:
    """Each window centred and band-pass filtered on its own (as the trials are)."""
    return bandpass(x - x.mean(-1, keepdims=True), *args.band)


def prepare(x: np.ndarray, args):
    """Band-pass, then scale every channel by its standard deviation over the training trials
    (one scale per channel keeps the relative amplitudes the covariance carries). Returns the
    scaled trials and the scale."""
    x = filtered(x, args)
    scale = x[SPLITS["train"]].std(axis=(0, 2), keepdims=True)
    return x / scale, scale


class Crops:
    """Training windows at random offsets in the recordings the training trials come from.

    Trials ``4k .. 4k+3`` are consecutive 1 s windows of one 4 s recording (same label); every
    epoch draws, per recording, four windows of 125 samples at random offsets in the joined
    signal, filtered and scaled like the trials. Validation and test trials are untouched.
    """

    def __init__(self, raw: np.ndarray, labels: np.ndarray, scale: np.ndarray, args):
        count = len(raw) // 4
        if not (labels[: 4 * count].reshape(count, 4) == labels[: 4 * count: 4, None]).all():
            raise ValueError("training trials 4k..4k+3 do not share a label: no recordings")
        self.recordings = np.concatenate(list(raw[: 4 * count].reshape(count, 4, *raw.shape[1:])
                                              .transpose(1, 0, 2, 3)), axis=-1)
        self.labels, self.scale, self.args = labels[: 4 * count: 4], scale, args
        self.width = raw.shape[-1]

    def draw(self, generator: torch.Generator, dtype, device):
        count, length = len(self.recordings), self.recordings.shape[-1]
        which = np.repeat(np.arange(count), 4)
        offsets = torch.randint(0, length - self.width + 1, (len(which),), generator=generator)
        idx = offsets.numpy()[:, None] + np.arange(self.width)
        windows = np.take_along_axis(self.recordings[which], idx[:, None, :].repeat(
            self.recordings.shape[1], 1), axis=-1)
        x = filtered(windows, self.args) / self.scale
        return (torch.as_tensor(x, dtype=dtype, device=device),
                torch.as_tensor(self.labels[which], device=device))


class FrontEnd(torch.nn.Module):
    """Linear convolutional front end: ``(batch, channels, time)`` to ``(batch, out_channels, time)``.

    ``order="temporal"``: a bank of temporal filters applied to every electrode, then a spatial
    convolution over (filter, electrode) pairs (the FBCSP / EEGNet order). ``order="spatial"``:
    a spatial convolution to ``maps`` virtual channels, then a temporal convolution (MAtt's
    feature extractor, Pan et al. 2022). Each convolution is followed by a BatchNorm2d.
    """

    def __init__(self, channels: int, maps: int, out_channels: int, kernel: int,
                 order: str = "temporal", dtype=None, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        pad = (0, kernel // 2)
        temporal_in = 1 if order == "temporal" else maps
        temporal_out = maps if order == "temporal" else out_channels
        self.temporal = torch.nn.Conv2d(temporal_in, temporal_out, (1, kernel), padding=pad, **kw)
        if order == "temporal":
            self.spatial = torch.nn.Conv2d(maps, out_channels, (channels, 1), **kw)
        else:
            self.spatial = torch.nn.Conv2d(1, maps, (channels, 1), **kw)
        self.order = order
        self.bn1 = torch.nn.BatchNorm2d(maps, **kw)
        self.bn2 = torch.nn.BatchNorm2d(out_channels, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = ((self.temporal, self.spatial) if self.order == "temporal"
                         else (self.spatial, self.temporal))
        x = self.bn1(first(x.unsqueeze(1)))
        return self.bn2(second(x)).squeeze(-2)


class Segments(torch.nn.Module):
    """``(batch, channels, time)`` to ``(batch, k, channels, time // k)``: ``k`` consecutive
    segments, one covariance each downstream (MAtt's manifold embedding)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1] // self.k
        return x[..., : self.k * length].unflatten(-1, (self.k, length)).transpose(1, 2)


def make_model(bn: str, args, channels: int = 8, classes: int = 5, dtype=None, device=None):
    kw = {"dtype": dtype, "device": device}
    n, hidden, k = args.feature_maps, args.hidden, args.segments
    layers = [FrontEnd(channels, args.maps, n, args.kernel, args.front, **kw), Segments(k),
              rnn.CovPool(shrinkage=args.shrinkage, trace_normalize=True, eps=1e-5),
              rnn.BiMap(n, hidden, **kw)]
    if bn != "none":
        layers.append(rnn.SPDBatchNorm(hidden, metric=bn, learn_metric=(bn == "gbw"), channels=(k,),
                                       **kw))
    layers += [rnn.ReEig(1e-4), rnn.LogEig(), rnn.Vech(), torch.nn.Flatten(1),
               torch.nn.Linear(k * hidden * (hidden + 1) // 2, classes, **kw)]
    return torch.nn.Sequential(*layers)


def session_logits(model, x: torch.Tensor, adapt: bool) -> torch.Tensor:
    """Logits of one session's trials: with the running statistics of training (``adapt``
    off), or with every batch norm (the front end's and the SPD one) normalising by the
    statistics of these trials themselves, no labels used (``adapt``: the unsupervised domain
    adaptation of SPDDSMBN, Kobler et al. 2022; the model's own statistics are left alone)."""
    if adapt:
        model = copy.deepcopy(model).train()
    else:
        model.eval()
    with torch.no_grad():
        return model(x)


def per_subject_copies(model: torch.nn.Module, count: int) -> torch.nn.ModuleList:
    """``count`` models that share every layer of ``model`` except the batch norms (the front
    end's ``BatchNorm2d`` and the SPD one): each copy has its own statistics and affine
    parameters, the other weights are the same tensors."""
    private = (torch.nn.modules.batchnorm._BatchNorm, rnn.SPDBatchNorm)

    def share(module):
        if isinstance(module, private):
            return copy.deepcopy(module)
        if not module._modules:
            return module
        shared = copy.copy(module)
        shared._modules = {name: share(child) for name, child in module._modules.items()}
        return shared

    return torch.nn.ModuleList([share(model) for _ in range(count)])


def train_epoch(models, optimizer, loss_fn, datasets, batch_size, generator, dtype, device):
    """One pass over every subject's training trials in minibatches of one subject each, each
    through that subject's model, the minibatches of all subjects in random order. Returns the
    mean training loss."""
    batches = []
    for d, data in enumerate(datasets):
        crops = data.get("crops")
        x, y = crops.draw(generator, dtype, device) if crops is not None else data["train"]
        order = torch.randperm(len(x), generator=generator).to(x.device)
        # a last batch of one trial is skipped: batch norm needs two
        batches += [(d, x[idx], y[idx]) for idx in order.split(batch_size) if len(idx) > 1]
    if len(datasets) > 1:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    models.train()
    total = 0.0
    for d, x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(models[d](x), y)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(y)
    return total / sum(len(y) for _, _, y in batches)


def fit(bn: str, datasets: list, args, dtype, device, label: str):
    """Train on the training trials of ``datasets`` (one per subject): one model per subject,
    or, with several, one network whose batch norms are per subject (``--pooled``). Every epoch
    records each subject's validation and test accuracy.

    Returns, per subject, the history and the epochs ranked by validation accuracy, ties
    broken by the lower validation loss (test accuracy plays no part in the ranking), with the
    class probabilities of every epoch on the test trials (``{"test": [...]}``).
    """
    common.seed_everything(args.seed)
    models = per_subject_copies(make_model(bn, args, dtype=dtype, device=device), len(datasets))
    optimizer = RiemannianAdam(models.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    keys = ("epoch", "loss", "eval_accuracy", "validation_loss", "test_accuracy")
    histories = [{key: [] for key in keys} for _ in datasets]
    probabilities = [{"test": []} for _ in datasets]
    bar = common.tqdm(range(args.epochs), desc=label, leave=False, file=sys.stderr)
    for epoch in bar:
        train_loss = train_epoch(models, optimizer, loss_fn, datasets, args.batch_size, generator,
                                 dtype, device)
        for model, data, history, probs in zip(models, datasets, histories, probabilities):
            logits = session_logits(model, data["validation"][0], args.adapt)
            test_logits = session_logits(model, data["test"][0], args.adapt)
            history["epoch"].append(epoch + 1)
            history["loss"].append(train_loss)
            history["validation_loss"].append(float(loss_fn(logits, data["validation"][1])))
            history["eval_accuracy"].append(common.hit_rate(logits, data["validation"][1]))
            history["test_accuracy"].append(common.hit_rate(test_logits, data["test"][1]))
            probs["test"].append(torch.softmax(test_logits.double(), -1).cpu())
        validation = np.mean([h["eval_accuracy"][-1] for h in histories])
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{validation:.2f}")
    return [(history, sorted(range(args.epochs), key=lambda e: (-history["eval_accuracy"][e],
                                                                 history["validation_loss"][e])),
             probs)
            for history, probs in zip(histories, probabilities)]


def snapshot_accuracy(probs: dict, ranking: list, k: int, labels: torch.Tensor, split: str) -> float:
    """Accuracy on ``split`` of the mean class probabilities of the ``k`` first epochs of
    ``ranking`` (a snapshot ensemble of one training run; ``k = 1``: the best epoch)."""
    mean = torch.stack([probs[split][e] for e in ranking[:k]]).mean(0)
    return common.hit_rate(mean, labels.cpu())


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0], epochs=100)
    parser.add_argument("--bn", default="aim", choices=METRICS)
    parser.add_argument("--compare", action="store_true", help="train every --bn choice")
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="folder of U001.mat ... U008.mat")
    parser.add_argument("--subjects", nargs="+", default=SUBJECTS, choices=SUBJECTS)
    parser.add_argument("--band", type=float, nargs=2, default=(4.0, 45.0), metavar=("LOW", "HIGH"),
                        help="band-pass in Hz")
    parser.add_argument("--front", default="spatial", choices=["temporal", "spatial"],
                        help="which convolution of the front end comes first")
    count = common.positive_int
    parser.add_argument("--maps", type=count, default=40, help="feature maps of the first convolution")
    parser.add_argument("--feature-maps", type=count, default=15, help="covariance size C'")
    parser.add_argument("--kernel", type=count, default=36, help="temporal kernel length (samples)")
    parser.add_argument("--hidden", type=count, default=12, help="BiMap output size")
    parser.add_argument("--segments", type=count, default=1, help="covariances per window")
    parser.add_argument("--shrinkage", type=common.fraction, default=0.0)
    parser.add_argument("--crops", action="store_true",
                        help="train on windows at random offsets of the 4 s training recordings")
    parser.add_argument("--pooled", action=argparse.BooleanOptionalAction, default=True,
                        help="one network trained on every subject's training trials, with "
                             "batch norms per subject (--no-pooled: one network per subject)")
    parser.add_argument("--adapt", action="store_true",
                        help="normalise the validation and test sessions by their own batch "
                             "statistics (unsupervised, no labels)")
    parser.add_argument("--snapshots", type=count, default=10,
                        help="test with the mean class probabilities of this many epochs, those "
                             "with the best validation accuracy (1: the best epoch alone)")
    parser.add_argument("--lr", type=common.positive_float, default=2e-3)
    parser.add_argument("--weight-decay", type=common.non_negative_float, default=1e-2)
    parser.add_argument("--batch-size", type=common.int_at_least(2), default=32)
    parser.add_argument("--threads", type=count, default=None, help="torch.set_num_threads")
    parser.add_argument("--limit", type=common.int_at_least(2), default=None,
                        help="use only the first N trials of each split (smoke tests)")
    # the convolutions dominate the cost and float32 halves it; the SPD layers are well
    # conditioned here (trace-normalised 15 x 15 covariances of 125 samples)
    parser.set_defaults(dtype="float32")
    args = parser.parse_args(argv)
    low, high = args.band
    if not 0 <= low < high < SAMPLING_RATE / 2:
        parser.error(f"--band {low:g} {high:g}: need 0 <= LOW < HIGH < {SAMPLING_RATE / 2:g} Hz")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype, device = common.dtype_of(args.dtype), torch.device(args.device)
    variants = METRICS if args.compare else [args.bn]

    datasets = {}
    for subject in args.subjects:
        raw, y = load_subject(args.data_dir, subject)
        x, scale = prepare(raw, args)
        data = {}
        if args.crops:
            data["crops"] = Crops(raw[SPLITS["train"]][: args.limit], y[SPLITS["train"]][: args.limit],
                                  scale, args)
        for split, sl in SPLITS.items():
            xs, ys = x[sl][: args.limit], y[sl][: args.limit]
            data[split] = (torch.as_tensor(xs, dtype=dtype, device=device),
                           torch.as_tensor(ys, device=device))
        datasets[subject] = data
    groups = [args.subjects] if args.pooled else [[subject] for subject in args.subjects]

    results = {bn: {} for bn in variants}
    for bn in variants:
        for group in groups:
            start = time.perf_counter()
            fits = fit(bn, [datasets[s] for s in group], args, dtype, device,
                       f"{'pooled' if args.pooled else group[0]} bn={bn}")
            seconds = (time.perf_counter() - start) / len(group)
            for subject, (history, ranking, probs) in zip(group, fits):
                best = ranking[0]
                data = datasets[subject]
                k = args.snapshots
                results[bn][subject] = {
                    "epoch": best + 1, "snapshot_epochs": [e + 1 for e in ranking[:k]],
                    "validation_accuracy": history["eval_accuracy"][best],
                    "best_epoch_test_accuracy": history["test_accuracy"][best],
                    "test_accuracy": snapshot_accuracy(probs, ranking, k, data["test"][1], "test"),
                    "seconds": seconds, "curves": history}
                print(f"{subject} bn={bn}: epoch {best + 1}, validation "
                      f"{history['eval_accuracy'][best]:.2f}, test {history['test_accuracy'][best]:.2f}"
                      f" (the {k} best epochs: {results[bn][subject]['test_accuracy']:.2f})",
                      file=sys.stderr)

    columns = ["model", "test accuracy mean", "test accuracy std", "best epoch: test accuracy mean",
               "best epoch: validation accuracy mean", "train seconds"]
    rows = []
    for bn in variants:
        test, best_test, val = (np.array([r[key] for r in results[bn].values()]) for key in
                                ("test_accuracy", "best_epoch_test_accuracy", "validation_accuracy"))
        seconds = sum(r["seconds"] for r in results[bn].values())
        name = f"batch norm: {bn}" + (" (per subject)" if args.pooled and bn != "none" else "")
        rows.append([name, float(test.mean()), float(test.std()), float(best_test.mean()),
                     float(val.mean()), round(seconds, 1)])
    setting = "one network for all, " if args.pooled else ""
    chosen = ("the best epoch on validation" if args.snapshots == 1 else
              f"mean probabilities of the {args.snapshots} best epochs on validation")
    common.print_table(f"MAMEM-SSVEP-II, {len(args.subjects)} subjects, {setting}seed {args.seed}, "
                       f"{args.epochs} epochs (test: {chosen})", columns, rows)
    # one curve per variant (the mean over subjects) keeps the plot readable; the JSON holds
    # every subject's curves under "subjects"
    histories = {f"bn={bn}": {key: np.mean([r["curves"][key] for r in results[bn].values()], 0).tolist()
                              for key in ("epoch", "loss", "eval_accuracy", "test_accuracy")}
                 for bn in variants}
    common.save_results(args.out, "mamem_ssvep", columns, rows, histories)
    path = os.path.join(args.out, "mamem_ssvep.json")
    with open(path) as f:
        saved = json.load(f)
    saved.update(arguments=vars(args), subjects=results)
    with open(path, "w") as f:
        json.dump(saved, f, indent=1)
    ok = all(np.isfinite(r[1]) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
