"""Class subspaces on the Grassmannian versus a softmax head, on scikit-learn's digits.

A small network maps 8x8 digit images to features; the Grassmann head keeps one learnable
subspace per class (a point of Gr(features, subspace_dim)) and scores a feature by the cosine of
its angle to each subspace, logit = gamma |S_k^T x / |x||. Both heads train jointly with the
network by RiemannianSGD (which steps the subspaces on the Grassmannian and the rest as SGD).
The data ship with scikit-learn (no download).

    python examples/grassmann_digits.py
"""

import sys

import numpy as np
import torch

from riemtorch.nn import SubspaceClassifier
from riemtorch.optim import RiemannianSGD

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402


def load_digits_split(seed: int, dtype, device):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = data.data / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, data.target, test_size=0.3, random_state=seed,
                                              stratify=data.target)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-3
    to = lambda a, t: torch.as_tensor(a, dtype=t, device=device)  # noqa: E731
    return (to((x_tr - mean) / std, dtype), to(y_tr, torch.long),
            to((x_te - mean) / std, dtype), to(y_te, torch.long))


def make_model(head: str, features: int, subspace_dim: int, dtype, device):
    body = [torch.nn.Linear(64, 64, dtype=dtype, device=device), torch.nn.ReLU(),
            torch.nn.Linear(64, features, dtype=dtype, device=device)]
    if head == "grassmann":
        out = SubspaceClassifier(features, 10, subspace_dim=subspace_dim, dtype=dtype, device=device)
    else:
        out = torch.nn.Linear(features, 10, dtype=dtype, device=device)
    return torch.nn.Sequential(*body, out)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0], epochs=40)
    parser.add_argument("--features", type=common.positive_int, default=16)
    parser.add_argument("--subspace-dim", type=common.positive_int, default=2)
    parser.add_argument("--lr", type=common.positive_float, default=0.05)
    parser.add_argument("--batch-size", type=common.positive_int, default=32)
    parser.add_argument("--seeds", type=common.positive_int, default=3, help="number of seeds to average")
    args = parser.parse_args(argv)
    if args.subspace_dim > args.features:
        parser.error(f"--subspace-dim {args.subspace_dim} exceeds --features {args.features}")
    dtype, device = common.dtype_of(args.dtype), torch.device(args.device)

    results = {"grassmann": [], "softmax": []}
    histories = {}
    for seed in range(args.seed, args.seed + args.seeds):
        data = load_digits_split(seed, dtype, device)
        for head in results:
            common.seed_everything(seed)
            model = make_model(head, args.features, args.subspace_dim, dtype, device)
            optimizer = RiemannianSGD(model.parameters(), lr=args.lr, momentum=0.9)
            history = common.train(model, optimizer, data[0], data[1], args.epochs, args.batch_size,
                                   data[2], data[3], label=f"{head} seed {seed}",
                                   generator=torch.Generator().manual_seed(seed))
            results[head].append(common.accuracy(model, data[2], data[3]))
            histories[f"{head} seed {seed}"] = history
    columns = ["head", "mean test accuracy", "std", "per seed"]
    rows = [[head, float(np.mean(a)), float(np.std(a)), " ".join(f"{v:.4f}" for v in a)]
            for head, a in results.items()]
    common.print_table(f"digits (30% stratified test split), {args.seeds} seeds, {args.epochs} epochs",
                       columns, rows)
    common.save_results(args.out, "grassmann_digits", columns, rows, histories)
    return 0 if all(np.isfinite(r[1]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
