"""NUTS on chunked data samples the posterior that NUTS in memory samples (issue 23, item 2).

Each gradient of ``fit(X_dask, method="nuts")`` is one Dask pass; the chains must end up
in the same posterior as ``fit(X)`` on the same rows: posterior means within 0.2 posterior
sd and sds within 20% (2 chains x 400 draws each side: the Monte Carlo error of a mean is
about 0.05 sd per fit), R-hat <= 1.02, no divergences. The fused Gaussian kernel and the
PyMC route (Poisson) per chunk.
"""

import numpy as np
import pytest
from mixture_data import counts_array

import bayesmix as bm

da = pytest.importorskip("dask.array")

pytestmark = pytest.mark.slow

SETTINGS = {"draws": 400, "tune": 400, "chains": 2, "progressbar": False, "random_seed": 3}


def _gaussian(rng, n=1000):
    z = rng.random(n) < 0.4
    return np.where(z[:, None], [-3.0, 0.0], [3.0, 1.0]) + rng.normal(size=(n, 2))


@pytest.mark.parametrize(
    ("cls", "make", "names"),
    [
        (bm.GaussianMixture, _gaussian, ("weights", "means", "covariances")),
        (bm.PoissonMixture, counts_array, ("weights", "rates")),
    ],
    ids=["gaussian-fused", "poisson-pymc"],
)
def test_nuts_on_dask_samples_the_in_memory_posterior(cls, make, names):
    X = make(np.random.default_rng(11))
    memory = cls(n_components=2, random_state=0).fit(X, **SETTINGS)
    chunked = cls(n_components=2, random_state=0).fit(
        da.from_array(X, chunks=(500, -1)), **SETTINGS
    )
    for fit in (memory, chunked):
        assert float(fit.idata.attrs["max_rhat"]) <= 1.02
        assert int(fit.idata["sample_stats"]["diverging"].sum()) == 0
    for name in names:
        a = chunked.idata["posterior"][name]
        b = memory.idata["posterior"][name]
        sd = b.std(("chain", "draw")).to_numpy()
        gap = np.abs((a.mean(("chain", "draw")) - b.mean(("chain", "draw"))).to_numpy())
        assert np.all(gap <= 0.2 * sd), (name, gap / sd)
        ratio = a.std(("chain", "draw")).to_numpy() / sd
        assert np.all((ratio > 0.8) & (ratio < 1.25)), (name, ratio)
