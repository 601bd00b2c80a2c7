"""Embed a tree in the Lorentz model and in Euclidean space of the same (low) dimension.

A balanced tree (branching 3, depth 4 by default: 121 nodes) is embedded with the loss of
Nickel & Kiela (2017): each edge (u, v) should be closer than random non-neighbours of u. The
hyperbolic embedding is a ManifoldParameter on the hyperboloid trained by RiemannianAdam; the
Euclidean one a plain parameter trained by the same optimizer. Reported: mean average
precision (mAP) of reconstructing each node's neighbours from distances, and the mean relative
distortion of all pairwise distances after the best scaling. A picture of the hyperbolic
embedding in the Poincaré disk is saved.

    python examples/hyperbolic_tree.py
"""

import os
import sys

import numpy as np
import torch

import riemtorch
from riemtorch.optim import RiemannianAdam

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402


def balanced_tree(branching: int, depth: int):
    """Edges ``(E, 2)`` and all-pairs graph distances ``(N, N)`` of a balanced tree."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    n = sum(branching ** d for d in range(depth + 1))
    children = np.arange(1, n)
    edges = np.stack([(children - 1) // branching, children], axis=1)
    adjacency = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return edges, shortest_path(adjacency, directed=False, unweighted=True)


def nickel_kiela_loss(dist_fn, points, edges, graph, negatives: int, generator):
    """Softmax loss: each directed edge against ``negatives`` random non-neighbours."""
    both = torch.cat([edges, edges.flip(1)])
    u, v = both[:, 0], both[:, 1]
    n = points.shape[0]
    cand = torch.randint(0, n, (len(u), negatives), generator=generator)
    # Candidates that are the node itself or a neighbour (graph distance <= 1) are left out.
    bad = graph[u[:, None], cand] <= 1
    d = dist_fn(points[u][:, None, :], points[torch.cat([v[:, None], cand], dim=1)])
    logits = (-d).masked_fill(torch.cat([torch.zeros_like(bad[:, :1]), bad], dim=1), -torch.inf)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(u), dtype=torch.long))


def mean_average_precision(dist: torch.Tensor, graph: torch.Tensor) -> float:
    """mAP of ranking every node's neighbours first by embedding distance."""
    n = dist.shape[0]
    dist = dist.clone()
    dist.fill_diagonal_(torch.inf)
    order = dist.argsort(dim=1)[:, : n - 1]
    relevant = (graph.gather(1, order) == 1).double()
    hits = relevant.cumsum(1)
    ranks = torch.arange(1, n, dtype=torch.float64)
    ap = (relevant * hits / ranks).sum(1) / relevant.sum(1)
    return float(ap.mean())


def distortion(dist: torch.Tensor, graph: torch.Tensor) -> float:
    """Mean of ``|s d_emb - d_graph| / d_graph`` over pairs, with the best median scale ``s``."""
    mask = graph > 0
    ratio = graph[mask] / dist[mask]
    scale = ratio.median()
    return float(((scale * dist[mask] - graph[mask]).abs() / graph[mask]).mean())


def embed(kind: str, dim: int, edges, graph, args, dtype):
    common.seed_everything(args.seed)
    n = graph.shape[0]
    if kind == "lorentz":
        manifold = riemtorch.Lorentz(1.0)
        init = manifold.expmap0(torch.cat([torch.zeros(n, 1, dtype=dtype),
                                           1e-2 * torch.randn(n, dim, dtype=dtype)], dim=1))
        points = riemtorch.ManifoldParameter(init, manifold)
        dist_fn = manifold.dist
    else:
        points = torch.nn.Parameter(1e-2 * torch.randn(n, dim, dtype=dtype))
        dist_fn = lambda a, b: riemtorch.linalg.safe.safe_norm(a - b)  # noqa: E731
    optimizer = RiemannianAdam([points], lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    history = {"epoch": [], "loss": [], "eval_accuracy": []}
    for epoch in common.tqdm(range(args.epochs), desc=kind, leave=False, file=sys.stderr):
        optimizer.zero_grad()
        loss = nickel_kiela_loss(dist_fn, points, edges, graph, args.negatives, generator)
        loss.backward()
        optimizer.step()
        if epoch % 50 == 0 or epoch == args.epochs - 1:
            with torch.no_grad():
                full = dist_fn(points[:, None, :], points[None, :, :])
            history["epoch"].append(epoch + 1)
            history["loss"].append(float(loss.detach()))
            history["eval_accuracy"].append(mean_average_precision(full, graph))
    with torch.no_grad():
        full = dist_fn(points[:, None, :], points[None, :, :])
    return points.detach(), full, history


def draw_disk(points: torch.Tensor, edges, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lorentz = riemtorch.Lorentz(1.0)
    # Left gyro-translation by the root's inverse is an isometry that moves the root to the centre.
    centred = lorentz.gyroadd(lorentz.gyroinv(points[:1]).expand_as(points), points)
    disk = lorentz.lorentz_to_poincare(centred).numpy()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="black"))
    for a, b in edges.tolist():
        ax.plot(*disk[[a, b]].T, color="tab:blue", linewidth=0.6)
    ax.scatter(disk[:, 0], disk[:, 1], s=6, color="tab:red", zorder=3)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", title="tree in the Poincaré disk")
    ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0], epochs=1500)
    parser.add_argument("--dim", type=common.positive_int, default=2)
    parser.add_argument("--branching", type=common.positive_int, default=3)
    parser.add_argument("--depth", type=common.positive_int, default=4)
    parser.add_argument("--negatives", type=common.positive_int, default=20)
    parser.add_argument("--lr", type=common.positive_float, default=0.05)
    args = parser.parse_args(argv)
    dtype = common.dtype_of(args.dtype)
    edges_np, graph_np = balanced_tree(args.branching, args.depth)
    edges, graph = torch.from_numpy(edges_np), torch.from_numpy(graph_np)

    rows, histories = [], {}
    for kind in ("lorentz", "euclidean"):
        points, dist, history = embed(kind, args.dim, edges, graph, args, dtype)
        rows.append([kind, mean_average_precision(dist.double(), graph), distortion(dist.double(), graph)])
        histories[kind] = history
        if kind == "lorentz":
            os.makedirs(args.out, exist_ok=True)
            draw_disk(points.double(), edges_np, os.path.join(args.out, "hyperbolic_tree_disk.png"))
    columns = ["embedding", "mAP", "mean distortion"]
    common.print_table(f"balanced tree ({graph.shape[0]} nodes) in dimension {args.dim}, "
                       f"{args.epochs} epochs", columns, rows)
    common.save_results(args.out, "hyperbolic_tree", columns, rows, histories)
    return 0 if all(np.isfinite(r[1]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
