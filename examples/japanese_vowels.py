"""SPDNet with Riemannian batch normalisation on JapaneseVowels (the main example).

Each utterance (12 LPC cepstrum channels, 7-29 frames) becomes a shrunk covariance matrix,
augmented with the channel means (a Gaussian embedded as an SPD matrix; ``--features covariance``
uses the plain 12x12 covariance); then
BiMap -> SPDBatchNorm -> ReEig -> LogEig -> Linear, trained with RiemannianAdam on the official
train/test split. The data ship with the ``aeon`` package (no download).

    python examples/japanese_vowels.py                 # batch norm under the AIM metric
    python examples/japanese_vowels.py --bn bw         # another metric
    python examples/japanese_vowels.py --compare       # every metric, no BN, and pyRiemann
"""

import sys
import time

import numpy as np
import torch

from riemtorch import nn as rnn
from riemtorch.optim import RiemannianAdam

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

METRICS = ["none", "aim", "lem", "lcm", "bw", "gbw"]


def load_split(split: str):
    """Trials as a list of ``(channels, time)`` arrays and labels 0..8."""
    from aeon.datasets import load_classification

    x, y = load_classification("JapaneseVowels", split=split)
    return [np.asarray(t, dtype=np.float64) for t in x], np.asarray(y).astype(int) - 1


def by_length(trials, fn, size: int) -> torch.Tensor:
    """``fn(signals)`` on trials grouped by length (each group one batch), in trial order."""
    out = torch.empty(len(trials), size, size, dtype=torch.float64)
    lengths = np.array([t.shape[1] for t in trials])
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        out[torch.from_numpy(idx)] = fn(torch.from_numpy(np.stack([trials[i] for i in idx])))
    return out


def oas_covariances(trials) -> torch.Tensor:
    """OAS-shrunk covariance per trial (trials can be shorter than the 12 channels)."""
    return by_length(trials, lambda s: rnn.functional.covariance(s, shrinkage="oas"), trials[0].shape[0])


def gaussian_embedding(trials, dtype) -> torch.Tensor:
    """``[[C + m m^T, m], [m^T, 1]]`` per trial, with the OAS covariance ``C`` and mean ``m``."""
    def embed(signals):
        cov = rnn.functional.covariance(signals, shrinkage="oas")
        mean = signals.mean(-1, keepdim=True)
        top = torch.cat([cov + mean @ mean.mT, mean], dim=-1)
        bottom = torch.cat([mean.mT, torch.ones(len(signals), 1, 1, dtype=torch.float64)], dim=-1)
        return torch.cat([top, bottom], dim=-2)

    return by_length(trials, embed, trials[0].shape[0] + 1).to(dtype)


def make_model(n: int, bn: str, classes: int, hidden: int = 10, mean_iters=1, dtype=None,
               device=None):
    layers = [rnn.BiMap(n, hidden, dtype=dtype, device=device)]
    if bn != "none":
        layers.append(rnn.SPDBatchNorm(hidden, metric=bn, learn_metric=(bn == "gbw"),
                                       mean_iters=mean_iters, dtype=dtype, device=device))
    layers += [rnn.ReEig(1e-4), rnn.LogEig(), rnn.Vech(),
               torch.nn.Linear(hidden * (hidden + 1) // 2, classes, dtype=dtype, device=device)]
    return torch.nn.Sequential(*layers)


def run_spdnet(bn, seed, data, args, dtype, device):
    x_train, y_train, x_test, y_test = data
    common.seed_everything(seed)
    model = make_model(x_train.shape[-1], bn, 9, args.hidden, args.mean_iters, dtype, device)
    optimizer = RiemannianAdam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    history = common.train(model, optimizer, x_train, y_train, args.epochs, args.batch_size,
                           x_test, y_test, label=f"bn={bn} seed={seed}",
                           generator=torch.Generator().manual_seed(seed))
    return common.accuracy(model, x_test, y_test), time.perf_counter() - start, history


def pyriemann_baseline(train_cov, y_train, test_cov, y_test) -> float:
    """OAS covariance -> tangent space -> logistic regression (pyRiemann + scikit-learn)."""
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    clf = make_pipeline(TangentSpace(metric="riemann"), LogisticRegression(max_iter=2000))
    clf.fit(train_cov, y_train)
    return float((clf.predict(test_cov) == y_test).mean())


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0], epochs=30)
    parser.add_argument("--bn", default="aim", choices=METRICS)
    parser.add_argument("--compare", action="store_true", help="train every --bn choice")
    parser.add_argument("--hidden", type=common.positive_int, default=10)
    parser.add_argument("--lr", type=common.positive_float, default=1e-2)
    parser.add_argument("--batch-size", type=common.int_at_least(2), default=30)
    parser.add_argument("--mean-iters", type=common.positive_int, default=1,
                        help="Karcher iterations of the batch mean in training (1 as in SPDNetBN)")
    parser.add_argument("--seeds", type=common.positive_int, default=1, help="number of seeds to average")
    parser.add_argument("--features", default="gaussian", choices=["gaussian", "covariance"],
                        help="Gaussian embedding (13x13, default) or the OAS covariance (12x12)")
    parser.add_argument("--limit", type=common.positive_int, default=None, help="use only the first N trials")
    args = parser.parse_args(argv)
    dtype, device = common.dtype_of(args.dtype), torch.device(args.device)

    train_trials, y_train = load_split("train")
    test_trials, y_test = load_split("test")
    if args.limit:
        train_trials, y_train = train_trials[: args.limit], y_train[: args.limit]
        test_trials, y_test = test_trials[: args.limit], y_test[: args.limit]
    features = ((lambda t: gaussian_embedding(t, dtype)) if args.features == "gaussian"
                else (lambda t: oas_covariances(t).to(dtype)))
    x_train, x_test = features(train_trials).to(device), features(test_trials).to(device)
    data = (x_train, torch.from_numpy(y_train).to(device), x_test, torch.from_numpy(y_test).to(device))

    rows, histories = [], {}
    seeds = range(args.seed, args.seed + args.seeds)
    for bn in (METRICS if args.compare else [args.bn]):
        accs, seconds = [], 0.0
        for seed in seeds:
            acc, elapsed, history = run_spdnet(bn, seed, data, args, dtype, device)
            accs.append(acc)
            seconds += elapsed
            histories[f"bn={bn} seed={seed}"] = history
        rows.append([f"SPDNet, batch norm: {bn}", float(np.mean(accs)), float(np.std(accs)),
                     round(seconds / len(accs), 1)])
    if args.compare:
        for name, features in (("OAS covariances", oas_covariances),
                               ("the same Gaussian embedding",
                                lambda t: gaussian_embedding(t, torch.float64))):
            baseline = pyriemann_baseline(features(train_trials).numpy(), y_train,
                                          features(test_trials).numpy(), y_test)
            rows.append([f"pyRiemann tangent space + logistic regression on {name}", baseline, 0.0, ""])
    columns = ["model", "mean test accuracy", "std", "train seconds per run"]
    common.print_table(f"JapaneseVowels, official split ({len(y_train)} train / {len(y_test)} test), "
                       f"seeds {args.seed}..{args.seed + args.seeds - 1}, {args.epochs} epochs",
                       columns, rows)
    common.save_results(args.out, "japanese_vowels", columns, rows, histories)
    return 0 if all(np.isfinite(r[1]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
