"""Worker pools: run a batch of per-client tasks on a few resident workers and collect the replies.

`LocalPool` runs workers in-process (tests, debugging). `RayPool` runs each worker as a Ray actor with
the configured `num_cpus` / fractional `num_gpus` and dispatches tasks dynamically: each actor holds one
task at a time and gets the next client as soon as it is free, so N virtual clients are served by any
number of actors. The broadcast state is put in the object store once per call. Apart from sweeps and
ray_jobs, this is the only module that imports ray.

Client faults: a task that raises is retried up to `retries` more times; a task whose actor died (killed,
crashed, out of memory) gets a fresh actor with the same options and spec in that actor's place and is
retried on the next free actor within the same budget. A task that still fails becomes a `WorkerError`
reply, never an exception: the coordinator decides what a failed client means for the round. Every
retried attempt and replaced actor is noted in the pool's `faults` (`FaultLog`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from f3ocus.federated.messages import GlobalState, ModelInfo, WorkerError
from f3ocus.federated.worker import ClientWorker, WorkerSpec

OnDone = Callable[[object], None]


class WorkerPool(Protocol):
    """`map(method, state, tasks)` returns one reply (or WorkerError) per task, in task order."""

    def model_info(self) -> ModelInfo: ...

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None) -> list: ...

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


class LocalPool:
    """One in-process worker serving every task in order; a raising task is retried `retries` more times,
    then becomes a WorkerError reply. `worker_cls` builds the worker (a ClientWorker or a subclass)."""

    def __init__(self, spec: WorkerSpec, *, retries: int = 0, worker_cls: type = ClientWorker):
        self._worker = worker_cls(spec)
        self._retries = retries
        self.faults = FaultLog()

    def model_info(self) -> ModelInfo:
        return self._worker.model_info()

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None) -> list:
        replies = []
        for task in tasks:
            for attempt in range(self._retries + 1):
                try:
                    reply = getattr(self._worker, method)(state, task)
                    break
                except Exception as error:  # noqa: BLE001 - retried, then a reply: the coordinator decides
                    reply = WorkerError(task.client, describe(error))
                    if attempt < self._retries:
                        self.faults.retries.append((task.client, reply.message))
            replies.append(reply)
            if on_done:
                on_done(reply)
        return replies

    def shutdown(self) -> None:
        pass


class RayPool:
    """`num_actors` worker actors; options (num_cpus, num_gpus, scheduling strategy) from the caller.

    `retries`: extra attempts per task (see the module docstring). `worker_cls`: the actor class, a
    ClientWorker or a subclass of it.
    """

    def __init__(self, spec: WorkerSpec, num_actors: int, actor_options: dict, *, retries: int = 0,
                 worker_cls: type = ClientWorker):
        import ray

        self._spec = spec
        self._retries = retries
        self._remote_cls = ray.remote(worker_cls).options(**actor_options)
        self._actors = [self._remote_cls.remote(spec) for _ in range(num_actors)]
        self.faults = FaultLog()

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

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None) -> list:
        import ray

        state_ref = ray.put(state)
        pending = [(index, task, 0) for index, task in enumerate(tasks)][::-1]  # pop() keeps task order
        running: dict = {}
        replies: list = [None] * len(tasks)

        def dispatch(slot: int) -> None:
            index, task, attempt = pending.pop()
            running[getattr(self._actors[slot], method).remote(state_ref, task)] = (index, task, attempt, slot)

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
        self._actors[slot] = self._remote_cls.remote(self._spec)
        self.faults.actors_replaced += 1


def _actor_lost() -> tuple[type[BaseException], ...]:
    """Errors meaning the actor itself is gone (killed, crashed, out of memory), not that the task raised."""
    from ray import exceptions

    return (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.OutOfMemoryError)
