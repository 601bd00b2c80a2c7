"""Leading eigenvector of a covariance matrix by Riemannian gradient ascent on the sphere.

A small end-to-end use of a manifold: Euclidean gradient from autograd, converted to the
Riemannian gradient, a retraction step, and a check against ``torch.linalg.eigh``.

    python examples/sphere_eigenvector.py
"""

import argparse

import torch

from riemtorch import Sphere


def main(n: int = 20, steps: int = 300, lr: float = 0.5, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(500, n, dtype=torch.float64, generator=g) * torch.linspace(3, 0.5, n,
                                                                                   dtype=torch.float64)
    cov = data.T @ data / data.shape[0]
    cov = cov / torch.linalg.matrix_norm(cov, ord=2)
    sphere = Sphere()
    x = sphere.random(n=n, dtype=torch.float64, generator=g)
    for step in range(steps):
        x.requires_grad_(True)
        rayleigh = x @ cov @ x
        (egrad,) = torch.autograd.grad(rayleigh, x)
        with torch.no_grad():
            x = sphere.retr(x, lr * sphere.egrad2rgrad(x, egrad))
        if step % 50 == 0:
            print(f"step {step:4d}  Rayleigh quotient {float(rayleigh.detach()):.10f}")
    top = torch.linalg.eigh(cov).eigenvectors[:, -1]
    angle = float(sphere.dist(x, torch.sign(top @ x) * top))
    print(f"angle to eigh's leading eigenvector: {angle:.2e} rad")
    return angle


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if args.n < 2 or args.steps < 1:
        parser.error(f"need --n >= 2 and --steps >= 1, got --n {args.n} --steps {args.steps}")
    main(args.n, args.steps)
