"""Worker pools: run a batch of per-client tasks on a few resident workers and collect the replies.

`LocalPool` runs workers in-process (tests, debugging). `RayPool` runs each worker as a Ray actor with
the configured `num_cpus` / fractional `num_gpus` and dispatches tasks dynamically: each actor holds one
task at a time and gets the next client as soon as it is free, so N virtual clients are served by any
number of actors. A free actor prefers the next client it served before (whose encoded shards it has
cached) and otherwise takes the next client in order, so clients stay on their actor unless balancing
needs a move. The broadcast state is put in the object store once per version and handed over as a
`SharedState` (a boxed reference), so each actor deserialises it once per version, not once per task.
Apart from sweeps, ray_jobs, ray_engine.py and a worker fetching a `SharedState`, this is the only module
that imports ray.

Client faults: a task that raises is retried up to `retries` more times; a task whose actor died (killed,
crashed, out of memory) gets a fresh actor with the same options and spec in that actor's place and is
retried on the next free actor within the same budget. A task that still fails becomes a `WorkerError`
reply, never an exception: the coordinator decides what a failed client means for the round. Every
retried attempt and replaced actor is noted in the pool's `faults` (`FaultLog`).

GPUs: an actor with fractional `num_gpus` shares a GPU with others (0.25: four per GPU); Ray assigns it a
GPU id and sets its `CUDA_VISIBLE_DEVICES`, and the worker picks its device from that (`ClientWorker.
device_info`, `RayPool.devices`). A pool not pinned to a placement group checks first that all its actors
fit the cluster's nodes at once (`check_actors_fit`): Ray would otherwise leave the ones that do not fit
pending forever, and the round would wait for them. A sweep trial's pool is pinned to bundles its trial
reserved (checked by `f3ocus.sweeps.placement.check_fits`) and skips this check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from f3ocus.config.schema import ConfigError
from f3ocus.federated.messages import GlobalState, ModelInfo, SharedState, WorkerError
from f3ocus.federated.worker import ClientWorker, WorkerSpec

OnDone = Callable[[object], None]
Attach = Callable[[Any], Any]


class WorkerPool(Protocol):
    """`map(method, state, tasks)` returns one reply (or WorkerError) per task, in task order.

    `on_done(reply)` is called on every final reply as it arrives. `attach(task) -> task` (methods whose
    clients keep state) is called on a task just before it is dispatched, each attempt, and returns the task
    to send (with the client's state attached); the pool keeps only the task it was given, so no more than
    the tasks in flight hold a client's state.

    `faults`: what the pool recovered from so far (retried attempts, replaced actors), cumulative over its
    life; the coordinator reads each phase's share into the round's record. `node_ids()`: the node of each
    worker (one entry per worker; empty for a pool that cannot tell).
    """

    faults: FaultLog

    def model_info(self) -> ModelInfo: ...

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None,
            attach: Attach | None = None) -> list: ...

    def node_ids(self) -> list[str]: ...

    def shutdown(self) -> None: ...


@dataclass
class FaultLog:
    """What a pool recovered from, cumulative over its life: one (client, reason) per retried attempt."""

    retries: list[tuple[str, str]] = field(default_factory=list)
    actors_replaced: int = 0


def describe(error: BaseException) -> str:
    """`Type: message` of the original exception (a RayTaskError's cause), first line only."""
    cause = getattr(error, "cause", None)
    error = cause if isinstance(cause, BaseException) else error
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def next_pending(pending: list, slot: int, home: dict[str, int], window: int) -> int:
    """Index in `pending` (task order reversed: the last entry is next) of the task for the free actor `slot`.

    Among the next `window` tasks (the number of actors: replies stay within about two actors' worth of
    task order, which bounds what the coordinator's in-order fold has to buffer), the earliest whose client
    was last served by `slot`, or was never served, so its encoded shards are warm; when each of them lives
    on another actor, the next task (balancing beats affinity: a free actor never waits).
    `pending` holds `(index, task, attempt)` tuples.
    """
    for position in range(len(pending) - 1, max(len(pending) - window, 0) - 1, -1):
        if home.get(pending[position][1].client, slot) == slot:
            return position
    return len(pending) - 1


class LocalPool:
    """One in-process worker serving every task in order; a raising task is retried `retries` more times,
    then becomes a WorkerError reply. `worker_cls` builds the worker (a ClientWorker or a subclass)."""

    def __init__(self, spec: WorkerSpec, *, retries: int = 0, worker_cls: type = ClientWorker):
        self._worker = worker_cls(spec)
        self._retries = retries
        self.faults = FaultLog()

    def model_info(self) -> ModelInfo:
        return self._worker.model_info()

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None,
            attach: Attach | None = None) -> list:
        replies = []
        for task in tasks:
            for attempt in range(self._retries + 1):
                sent = attach(task) if attach else task  # outside the try: a store error is the coordinator's
                try:
                    reply = getattr(self._worker, method)(state, sent)
                    break
                except Exception as error:  # noqa: BLE001 - retried, then a reply: the coordinator decides
                    reply = WorkerError(task.client, describe(error))
                    if attempt < self._retries:
                        self.faults.retries.append((task.client, reply.message))
            replies.append(reply)
            if on_done:
                on_done(reply)
        return replies

    def node_ids(self) -> list[str]:
        return ["local"]

    def devices(self) -> list[dict]:
        """The worker's `device_info()` (one entry: the pool has one worker)."""
        return [self._worker.device_info()]

    def shutdown(self) -> None:
        pass


class RayPool:
    """`num_actors` worker actors; options (num_cpus, num_gpus, scheduling strategy) from the caller.

    `retries`: extra attempts per task (see the module docstring). `worker_cls`: the actor class, a
    ClientWorker or a subclass of it. `slot_options`: optional per-actor extra options, one mapping per
    actor, merged over `actor_options` (a sweep trial pins actor i to bundle i of its placement group with
    a `scheduling_strategy`); a replaced actor gets its slot's options again.
    """

    def __init__(self, spec: WorkerSpec, num_actors: int, actor_options: dict, *, retries: int = 0,
                 worker_cls: type = ClientWorker, slot_options: Sequence[dict] | None = None):
        import ray

        if slot_options is not None and len(slot_options) != num_actors:
            raise ValueError(f"slot_options lists {len(slot_options)} entries for {num_actors} actors")
        if slot_options is None:  # pinned actors live in bundles their trial reserved (checked there)
            check_actors_fit(num_actors, actor_options, [node["Resources"] for node in ray.nodes() if node.get("Alive")])
        self._spec = spec
        self._retries = retries
        remote_cls = ray.remote(worker_cls)
        self._slot_cls = [remote_cls.options(**{**actor_options, **(slot_options[slot] if slot_options else {})})
                          for slot in range(num_actors)]
        self._actors = [cls.remote(spec) for cls in self._slot_cls]
        self._home: dict[str, int] = {}  # client -> slot of the actor that served it last (shards cached there)
        self._shared: SharedState | None = None  # the last broadcast put in the object store
        self.faults = FaultLog()

    def node_ids(self) -> list[str]:
        """The Ray node id of each actor, in slot order (where the pool's actors were scheduled)."""
        import ray

        return ray.get([actor.__ray_call__.remote(_node_of) for actor in self._actors])

    def devices(self) -> list[dict]:
        """Each actor's `device_info()` (device, Ray GPU ids, CUDA_VISIBLE_DEVICES, ...), in slot order."""
        import ray

        return ray.get([actor.device_info.remote() for actor in self._actors])

    def model_info(self) -> ModelInfo:
        import ray

        for attempt in range(self._retries + 1):
            try:
                return ray.get(self._actors[0].model_info.remote())
            except _actor_lost() as error:
                if attempt == self._retries:
                    raise
                self._replace(0, describe(error))
        raise AssertionError("unreachable")

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None,
            attach: Attach | None = None) -> list:
        import ray

        # Put once per version (score and train share one); actors fetch it once per version too.
        if self._shared is None or self._shared.version != state.version:
            self._shared = None
            self._shared = SharedState(state.version, [ray.put(state)])
        shared = self._shared
        pending = [(index, task, 0) for index, task in enumerate(tasks)][::-1]  # reversed: the last entry is next
        running: dict = {}
        replies: list = [None] * len(tasks)

        def dispatch(slot: int) -> None:
            index, task, attempt = pending.pop(next_pending(pending, slot, self._home, len(self._actors)))
            self._home[task.client] = slot
            sent = attach(task) if attach else task  # with its client state: serialised now, not kept here
            running[getattr(self._actors[slot], method).remote(shared, sent)] = (index, task, attempt, slot)

        for slot in range(len(self._actors)):
            if pending:
                dispatch(slot)
        while running:
            [done], _ = ray.wait(list(running), num_returns=1)
            index, task, attempt, slot = running.pop(done)
            reply = None
            try:
                reply = ray.get(done)
            except Exception as error:  # noqa: BLE001 - RayTaskError / ActorDiedError: retry, then a reply
                reason = describe(error)
                if isinstance(error, _actor_lost()):
                    self._replace(slot, reason)  # the slot gets a live actor whether or not the task is retried
                if attempt < self._retries:
                    self.faults.retries.append((task.client, reason))
                    pending.append((index, task, attempt + 1))  # next to go, on the first free actor
                else:
                    reply = WorkerError(task.client, reason)
            if reply is not None:
                replies[index] = reply
                if on_done:
                    on_done(reply)
            if pending:
                dispatch(slot)
        return replies

    def shutdown(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)

    def _replace(self, slot: int, reason: str) -> None:
        """Put a fresh actor (same options, same spec) in place of a dead one."""
        import ray

        try:
            ray.kill(self._actors[slot], no_restart=True)  # dead already, or unreachable: make sure
        except Exception:  # noqa: BLE001 - nothing left to kill
            pass
        self._actors[slot] = self._slot_cls[slot].remote(self._spec)
        self.faults.actors_replaced += 1


# Ray's own names for the actor options that reserve node resources.
_RESOURCE_OPTIONS = {"num_cpus": "CPU", "num_gpus": "GPU"}


def check_actors_fit(num_actors: int, actor_options: Mapping[str, Any], nodes: Sequence[Mapping[str, float]]) -> None:
    """All `num_actors` identical actors can run at once on `nodes`.

    A node holds ⌊have_r / need_r⌋ of them for the scarcest resource r it is asked for, and identical
    actors fit the cluster exactly when those counts add up to `num_actors` (Ray never splits one actor
    over nodes). Resources are the options' `num_cpus`, `num_gpus` and custom `resources`.

    Args:
        num_actors: client actors of the pool.
        actor_options: their Ray options (`num_cpus`, `num_gpus`, optional `resources`).
        nodes: the total resources of each alive node (`ray.nodes()[i]["Resources"]`).

    Raises:
        ConfigError: naming `federation.worker_resources`, what one actor needs and what the nodes have.
    """
    need = {resource: float(actor_options[option]) for option, resource in _RESOURCE_OPTIONS.items()
            if actor_options.get(option)}
    need.update({name: float(amount) for name, amount in (actor_options.get("resources") or {}).items() if amount})
    if not need:
        return
    capacity = sum(min(math.floor(float(node.get(resource, 0.0)) / amount + 1e-6) for resource, amount in need.items())
                   for node in nodes)
    if capacity >= num_actors:
        return
    shown = [{resource: float(node.get(resource, 0.0)) for resource in need} for node in nodes]
    raise ConfigError("federation.worker_resources",
                      f"{num_actors} client actors needing {need} each can never all run: the cluster's nodes "
                      f"{shown} hold {capacity} of them at once. Lower federation.num_actors or the actors' "
                      f"num_cpus / num_gpus, or add nodes")


def _node_of(_instance: object) -> str:
    """Run inside an actor by `__ray_call__`: the id of the node it lives on."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _actor_lost() -> tuple[type[BaseException], ...]:
    """Errors meaning the actor itself is gone (killed, crashed, out of memory), not that the task raised."""
    from ray import exceptions

    return (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.OutOfMemoryError)
