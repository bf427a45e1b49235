"""How often R-hat exceeds 1.01 for chains that sample exactly the right distribution.

Usage::

    python bench/rhat_noise.py             # results in bench/results/rhat_noise.{json,md}

The family benchmark (``bench/families.py``) counts a run as clean when its max R-hat
(rank-normalised split R-hat, ArviZ's) is at most 1.01 and it has no divergence. R-hat
is itself an estimate: with a few hundred effective draws it scatters above 1.01 even
when every chain samples the target. This benchmark measures how often, with no sampler
at all: each "run" is independent stationary Gaussian AR(1) chains (lag-1 autocorrelation
``rho``, so the chains agree by construction) for a few slowly mixing parameters and
many fast ones (``rho = 0.3``), as a mixture posterior has; the max R-hat and the min bulk
ESS are computed by ``arviz_stats`` as for a fit. 400 runs per row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _table import markdown_table, run_meta, write_results  # noqa: E402  (a sibling module)

RUNS = 400
FAST = 17  # fast parameters per run (rho = 0.3), beside the slow ones
# (chains, draws per chain, rho of the slow parameters, number of slow parameters)
SETTINGS = [
    (2, 1000, 0.9, 4),
    (2, 1000, 0.8, 4),
    (2, 1000, 0.8, 8),
    (2, 1000, 0.7, 4),
    (2, 1000, 0.6, 4),
    (2, 1000, 0.5, 4),
    (4, 1000, 0.8, 4),
    (2, 4000, 0.8, 4),
]


def ar1(rng: np.random.Generator, rho: float, shape: tuple[int, ...], draws: int) -> np.ndarray:
    """Stationary AR(1) chains of unit variance: (*shape, draws)."""
    noise = rng.standard_normal((*shape, draws))
    out = np.empty_like(noise)
    out[..., 0] = noise[..., 0]
    scale = np.sqrt(1.0 - rho**2)
    for t in range(1, draws):
        out[..., t] = rho * out[..., t - 1] + scale * noise[..., t]
    return out


def measure(rng, chains: int, draws: int, rho: float, n_slow: int) -> dict:
    from arviz_stats.base import array_stats

    max_rhat, min_ess = [], []
    for _ in range(RUNS):
        slow = ar1(rng, rho, (n_slow, chains), draws)
        fast = ar1(rng, 0.3, (FAST, chains), draws)
        x = np.concatenate([slow, fast])  # (parameter, chain, draw)
        max_rhat.append(float(np.max(array_stats.rhat(x))))
        min_ess.append(float(np.min(array_stats.ess(x))))
    max_rhat, min_ess = np.array(max_rhat), np.array(min_ess)
    return {
        "chains": chains,
        "draws": draws,
        "rho": rho,
        "slow": n_slow,
        "ess_median": float(np.median(min_ess)),
        "ess_q10": float(np.quantile(min_ess, 0.1)),
        "ess_q90": float(np.quantile(min_ess, 0.9)),
        "flagged": float(np.mean(max_rhat > 1.01)),
        "rhat_median": float(np.median(max_rhat)),
    }


def report(rows: list[dict], meta: dict) -> str:
    lines = [
        "# R-hat of chains that agree by construction",
        "",
        f"{meta['date']}, {meta['machine']}; {RUNS} runs per row, each with {FAST} fast "
        "parameters (AR(1), rho 0.3) beside the slow ones. Max R-hat is ArviZ's "
        "rank-normalised split R-hat over all parameters; min ESS its bulk ESS.",
        "",
        *markdown_table(
            [
                "chains x draws",
                "slow parameters (rho)",
                "min bulk ESS: median (10%-90%)",
                "median max R-hat",
                "runs with max R-hat > 1.01",
            ],
            [
                (
                    f"{r['chains']} x {r['draws']}",
                    f"{r['slow']} ({r['rho']})",
                    f"{r['ess_median']:.0f} ({r['ess_q10']:.0f}-{r['ess_q90']:.0f})",
                    f"{r['rhat_median']:.4f}",
                    f"{r['flagged']:.0%}",
                )
                for r in rows
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    rng = np.random.default_rng(20261207)
    rows = []
    for chains, draws, rho, n_slow in SETTINGS:
        rows.append(measure(rng, chains, draws, rho, n_slow))
        r = rows[-1]
        print(
            f"{chains} x {draws}, {n_slow} slow (rho {rho}): min ESS {r['ess_median']:.0f}, "
            f"max R-hat > 1.01 in {r['flagged']:.0%}",
            flush=True,
        )
    print(write_results("rhat_noise", run_meta(["arviz-stats", "numpy"]), rows, report))


if __name__ == "__main__":
    main()
