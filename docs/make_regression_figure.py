"""Draw docs/regression.png, the README's figure of a mixture of regressions (NUTS, ~15 s).

Run from the repository root: ``python docs/make_regression_figure.py``. Simulated
dose-response data: responders (40%) whose outcome rises with the dose, non-responders
whose outcome drifts down; a Gaussian mixture of two regressions, NUTS from the EM start.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import bayesmix as bm

OUT = Path(__file__).parent / "regression.png"


def main() -> None:
    """Fit the mixture of regressions by NUTS and save the figure."""
    rng = np.random.default_rng(0)
    dose = rng.uniform(0, 10, 300)
    responder = rng.random(300) < 0.4
    outcome = np.where(responder, 1.0 + 2.0 * dose, 8.0 - 0.5 * dose)
    outcome += rng.normal(0, np.where(responder, 0.5, 1.0))
    fit = bm.MixtureRegression(n_components=2, random_state=0).fit(dose, outcome, progressbar=False)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    bm.plot_regression(fit, ax=ax)
    ax.set_xlabel("dose")
    ax.set_ylabel("outcome")
    ax.set_title("Two regression lines, 94% bands (NUTS); EM dashed", fontsize="medium")
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")
    print(fit.summary()[["mean", "sd", "hdi94_lb", "hdi94_ub", "r_hat"]].round(3))


if __name__ == "__main__":
    main()
