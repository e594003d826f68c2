"""The federated engine: messages, masked FedAvg, client workers, worker pools, the coordinator, Ray glue."""

from f3ocus.federated.aggregate import masked_fedavg
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.state import Federation, FederationState

__all__ = ["masked_fedavg", "Coordinator", "Federation", "FederationState"]
