"""Draw docs/collection.png, the README's figure of the model collection (EM fits, ~10 s).

Run from the repository root: ``python docs/make_collection_figure.py``.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayesmix as bm

OUT = Path(__file__).parent / "collection.png"


def main() -> None:
    """Fit the four EM models and save the figure."""
    fig = plt.figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 4)

    faithful = bm.datasets.load_faithful()
    rng = np.random.default_rng(0)
    low, high = faithful.min().to_numpy(), faithful.max().to_numpy()
    centre, half = (low + high) / 2, 1.5 * (high - low)
    outliers = pd.DataFrame(
        rng.uniform(centre - half, centre + half, (14, 2)), columns=faithful.columns
    )
    dirty = pd.concat([faithful, outliers], ignore_index=True)
    for ax, family, title in (
        (axes[0], bm.GaussianMixture, "Gaussian: outliers distort the components"),
        (axes[1], bm.StudentTMixture, "Student-t: the tails absorb them"),
    ):
        fit = family(n_components=2, random_state=0).fit(dirty, method="em")
        bm.plot_components(fit, ax=ax)
        ax.set_title(title, fontsize="medium")
        ax.get_legend().remove()

    counts = bm.datasets.load_discoveries()[["discoveries"]]
    poisson = bm.PoissonMixture(n_components=2, random_state=0).fit(counts, method="em")
    bm.plot_components(poisson, ax=[axes[2]])
    axes[2].set_title("Poisson: two regimes of discoveries per year", fontsize="medium")

    carcinoma = bm.datasets.load_carcinoma()
    lca = bm.BernoulliMixture(n_components=3, n_init=10, random_state=0).fit(carcinoma, method="em")
    bm.plot_components(lca, ax=axes[3])
    axes[3].set_title("Bernoulli: latent classes of diagnoses", fontsize="medium")
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
