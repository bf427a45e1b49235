"""The NUTS engine shared by every family.

* :mod:`.sampler`: sampling with nutpie (a family's fused target or the compiled PyMC
  model, with a cache of compiled models) in Laplace coordinates;
* :mod:`.laplace`: the affine map from the curvature at the EM start;
* :mod:`.jax`: ``nuts_sampler="numpyro"`` or ``"blackjax"``, PyMC's JAX backends (GPUs);
* :mod:`._nutpie_internals`: every use of nutpie's private API, with its fallback.
"""

#: The NUTS implementations ``fit(nuts_sampler=...)`` accepts (here, so that the CLI can
#: list them without importing PyMC).
NUTS_SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
