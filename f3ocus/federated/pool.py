"""Worker pools: run a batch of per-client tasks on a few resident workers and collect the replies.

`LocalPool` runs workers in-process (tests, debugging). `RayPool` runs each worker as a Ray actor with
the configured `num_cpus` / fractional `num_gpus` and dispatches tasks dynamically: each actor holds one
task at a time and gets the next client as soon as it is free, so N virtual clients are served by any
number of actors. The broadcast state is put in the object store once per call. Apart from sweeps and
ray_jobs, this is the only module that imports ray.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from f3ocus.federated.messages import GlobalState, ModelInfo, WorkerError
from f3ocus.federated.worker import ClientWorker, WorkerSpec

OnDone = Callable[[object], None]


class WorkerPool(Protocol):
    """`map(method, state, tasks)` returns one reply (or WorkerError) per task, in task order."""

    def model_info(self) -> ModelInfo: ...

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None) -> list: ...

    def shutdown(self) -> None: ...


class LocalPool:
    """One in-process worker serving every task in order; exceptions become WorkerError replies."""

    def __init__(self, spec: WorkerSpec):
        self._worker = ClientWorker(spec)

    def model_info(self) -> ModelInfo:
        return self._worker.model_info()

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None) -> list:
        replies = []
        for task in tasks:
            try:
                reply = getattr(self._worker, method)(state, task)
            except Exception as error:  # noqa: BLE001 - turned into a reply, the coordinator decides
                reply = WorkerError(task.client, f"{type(error).__name__}: {error}")
            replies.append(reply)
            if on_done:
                on_done(reply)
        return replies

    def shutdown(self) -> None:
        pass


class RayPool:
    """`num_actors` ClientWorker actors; options (num_cpus, num_gpus, scheduling strategy) from the caller."""

    def __init__(self, spec: WorkerSpec, num_actors: int, actor_options: dict):
        import ray

        remote_cls = ray.remote(ClientWorker)
        self._actors = [remote_cls.options(**actor_options).remote(spec) for _ in range(num_actors)]

    def model_info(self) -> ModelInfo:
        import ray

        return ray.get(self._actors[0].model_info.remote())

    def map(self, method: str, state: GlobalState, tasks: Sequence, on_done: OnDone | None = None) -> list:
        import ray

        state_ref = ray.put(state)
        pending = list(enumerate(tasks))[::-1]  # pop() from the end keeps task order of dispatch
        running: dict = {}
        replies: list = [None] * len(tasks)
        for actor in self._actors:
            if pending:
                index, task = pending.pop()
                running[getattr(actor, method).remote(state_ref, task)] = (index, task, actor)
        while running:
            [done], _ = ray.wait(list(running), num_returns=1)
            index, task, actor = running.pop(done)
            try:
                replies[index] = ray.get(done)
            except Exception as error:  # noqa: BLE001 - RayTaskError / ActorDiedError -> reply
                replies[index] = WorkerError(task.client, f"{type(error).__name__}: {error}")
            if on_done:
                on_done(replies[index])
            if pending:
                next_index, next_task = pending.pop()
                running[getattr(actor, method).remote(state_ref, next_task)] = (next_index, next_task, actor)
        return replies

    def shutdown(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
