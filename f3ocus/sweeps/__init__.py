"""Sweeps: Ray Tune over experiment configs, each trial one federated run inside its own placement group.

`spec` reads and checks sweep files (no Ray), `placement` turns a trial's config into its placement
group bundles, `space` builds Tune's search space, `trainable` is the trial function, `tracking` the
MLflow parent run and tracking server, and `runner.run_sweep` puts them together.
"""

from f3ocus.sweeps.spec import SweepSpec, load_sweep

__all__ = ["SweepSpec", "load_sweep"]
