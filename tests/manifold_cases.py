"""The manifolds that the generic axiom tests (test_axioms.py) run over.

A new manifold joins the generic tests by appending one ``Case`` to ``CASES``.

``RIEMTORCH_TEST_DEVICE=cuda`` runs the law tests on that device: data are drawn on the CPU
(seeded generators) and moved there, the manifold is built there (:func:`build`).
"""

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

DEVICE = torch.device(os.environ.get("RIEMTORCH_TEST_DEVICE", "cpu"))


def build(case):
    """The manifold of ``case`` on the test device."""
    m = case.make()
    return m.to(DEVICE) if isinstance(m, torch.nn.Module) else m


def draw(case, *batch, dtype, generator):
    """Random points of ``case`` drawn on the CPU with ``generator``, on the test device."""
    return case.make().random(*batch, dtype=dtype, generator=generator,
                              **case.random_kwargs).to(DEVICE)


@dataclass
class Case:
    """One manifold configuration for the axiom tests.

    id: test id. make: builds the manifold (called once per test). random_kwargs: extra keyword
    arguments of ``manifold.random`` (point size). step: norm of the tangent vectors used for
    exp/log round trips (inside the injectivity radius). parallel: ``transp`` is a parallel
    transport (it must keep inner products). tangent: optional ``f(manifold, x, generator)``
    returning tangent vectors at ``x`` (default: ``proju`` of a Gaussian).
    """

    id: str
    make: Callable
    random_kwargs: dict = field(default_factory=dict)
    step: float = 0.5
    parallel: bool = True
    tangent: Optional[Callable] = None


def _sphere():
    from riemtorch import Sphere

    return Sphere()


def _euclidean():
    from riemtorch import Euclidean

    return Euclidean(ndim=2)


CASES = [
    Case("euclidean", _euclidean, {"shape": (3, 2)}),
    Case("sphere", _sphere, {"n": 5}),
]


@dataclass
class GyroCase:
    """A manifold with a gyro structure for test_gyro_laws.py.

    id, make, random_kwargs: as in ``Case``. spread: points are ``gyroscalarmul(spread, random)``
    to keep them where the float tolerances of the laws hold. isometry: gyrations preserve
    the distance ``dist`` (true for every structure in DESIGN.md). same_point: optional
    ``f(manifold, a, b)`` returning the largest discrepancy between points ``a`` and ``b`` where
    one point has several representations (Grassmann bases); default: tensors compared directly.
    """

    id: str
    make: Callable
    random_kwargs: dict = field(default_factory=dict)
    spread: float = 1.0
    same_point: Optional[Callable] = None


GYRO_CASES = []


def _stiefel(metric, retraction="qr"):
    def make():
        from riemtorch import Stiefel

        return Stiefel(metric=metric, retraction=retraction)

    return make


def _grassmann():
    from riemtorch import Grassmann

    return Grassmann()


CASES += [
    Case("stiefel-canonical", _stiefel("canonical", "cayley"), {"n": 6, "p": 3}, parallel=False),
    Case("grassmann", _grassmann, {"n": 6, "p": 3}),
]


def _hyperbolic(name, value):
    def make():
        import riemtorch

        return getattr(riemtorch, name)(value)

    return make


CASES += [
    Case("stereographic-k-1", _hyperbolic("Stereographic", -1.0), {"n": 4}),
    Case("stereographic-k0.7", _hyperbolic("Stereographic", 0.7), {"n": 4}),
    Case("poincare-c2", _hyperbolic("PoincareBall", 2.0), {"n": 4}),
    Case("lorentz-k1", _hyperbolic("Lorentz", 1.0), {"n": 5}),
    Case("lorentz-k2.5", _hyperbolic("Lorentz", 2.5), {"n": 5}),
]
GYRO_CASES += [
    GyroCase("stereographic-k-1", _hyperbolic("Stereographic", -1.0), {"n": 4}),
    GyroCase("stereographic-k0.7", _hyperbolic("Stereographic", 0.7), {"n": 4}),
    GyroCase("poincare-c2", _hyperbolic("PoincareBall", 2.0), {"n": 4}),
    GyroCase("lorentz-k1", _hyperbolic("Lorentz", 1.0), {"n": 5}),
    GyroCase("lorentz-k2.5", _hyperbolic("Lorentz", 2.5), {"n": 5}),
]


def _grassmann_same_point(m, a, b):
    return m.projector_distance(a, b)


GYRO_CASES += [
    GyroCase("grassmann", _grassmann, {"n": 6, "p": 3}, spread=0.7,
             same_point=_grassmann_same_point),
]


def _spd(name, **kwargs):
    def make():
        import riemtorch

        if name == "SPDGeneralizedBuresWasserstein":
            g = torch.Generator().manual_seed(7)
            m = riemtorch.SPDAffineInvariant().random(n=4, dtype=torch.float64, generator=g)
            return riemtorch.SPDGeneralizedBuresWasserstein(m, **kwargs)
        return getattr(riemtorch, name)(**kwargs)

    return make


CASES += [
    Case("spd-aim", _spd("SPDAffineInvariant"), {"n": 4}),
    Case("spd-aim-power0.5", _spd("SPDAffineInvariant", power=0.5), {"n": 4}),
    Case("spd-lem", _spd("SPDLogEuclidean"), {"n": 4}),
    Case("spd-lcm", _spd("SPDLogCholesky"), {"n": 4}),
    # BW transport: isometric vector transport through the identity (parallel when commuting)
    Case("spd-bw", _spd("SPDBuresWasserstein"), {"n": 4}, step=0.3),
    Case("spd-bw-power0.5", _spd("SPDBuresWasserstein", power=0.5), {"n": 4}, step=0.3),
    Case("spd-gbw", _spd("SPDGeneralizedBuresWasserstein"), {"n": 4}, step=0.3),
]
GYRO_CASES += [
    GyroCase("spd-aim", _spd("SPDAffineInvariant"), {"n": 4}),
    GyroCase("spd-aim-power0.5", _spd("SPDAffineInvariant", power=0.5), {"n": 4}),
    GyroCase("spd-lem", _spd("SPDLogEuclidean"), {"n": 4}),
    GyroCase("spd-lcm", _spd("SPDLogCholesky"), {"n": 4}),
]
