"""f3ocus: federated fine-tuning of vision-language models with F3OCUS layer selection, on Ray.

Start reading at `f3ocus.experiment.run_experiment`, then the round loop `f3ocus.federated.rounds.run_rounds`,
then one round: `f3ocus.federated.coordinator.Coordinator.run_round`.
"""

import time

__version__ = "0.1.0"
IMPORTED_AT = time.time()  # when this process began importing f3ocus (start-up timelines: bench/startup.py)
