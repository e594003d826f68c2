"""The coordinator: holds the global state, runs selection and aggregation, and is the only logger.

`run_round` is docs/METHOD.md §4 step by step: broadcast -> score -> select -> train -> aggregate ->
evaluate -> log. The loop over rounds that calls it is `f3ocus.federated.rounds.run_rounds`. The coordinator holds no model and sees no data: it knows the units, the tensors of
the global state, client names, example counts and budgets. It runs in-process (`LocalPool`, tests)
or as a Ray actor that owns a `RayPool` of client actors. Everything needed to continue a run lives in
`FederationState` (with the federation's public facts, `Federation`, in `state.py`), which is written
after every round, before the round's metrics are logged (`_checkpoint_and_log`).

Client state: when the workers declare tensors that each client keeps across rounds (`ModelInfo.
client_state_names`, e.g. FedDAT's personal adapter), the coordinator keeps them in a `ClientStateStore`
on disk under the run dir (memory flat in the number of clients), attaches a client's state to its train
and evaluation tasks as they are dispatched, stores the state a usable update brings back (a failed or
rejected client keeps its previous one), names the stored states in the checkpoint, and counts the bytes
moved as `comm/state_bytes`, apart from the upload.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated import evaluation
from f3ocus.federated.aggregate import RunningFedAvg
from f3ocus.federated.checkpoint import PREVIOUS_CHECKPOINT, run_identity
from f3ocus.federated.client_state import CLIENT_STATE_DIR, ClientStateStore
from f3ocus.federated.messages import (ClientUpdate, EvalReport, EvalTask, GlobalState, ScoreReport, ScoreTask,
                                       TrainTask, WorkerError, tensor_bytes)
from f3ocus.federated.pool import WorkerPool
from f3ocus.federated.rounds import run_rounds
from f3ocus.federated.state import (CHECKPOINT, Federation, FederationState, Progress, TooFewClientsError,
                                    UpdateSummary)
from f3ocus.selection import SelectionResult, build_selector, check_mask
from f3ocus.tracking import names
from f3ocus.tracking.base import MetricLogger
from f3ocus.utils.seeding import SCORE, SELECT, TRAIN, derive_seed, numpy_rng


def _non_finite(update: ClientUpdate) -> str | None:
    """Why `update` must not be aggregated (NaN/Inf in its tensors or loss), or None when it is fine."""
    if not math.isfinite(update.train_loss):
        return f"train_loss is {update.train_loss}"
    bad = [name for name, tensor in (*update.tensors.items(), *(update.client_state or {}).items())
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        return f"NaN/Inf in {len(bad)} tensor(s), e.g. {bad[0]}"
    return None


class _Laps:
    """Wall seconds of consecutive phases of a round: `lap(name)` closes the phase running since the last lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now


# Per-round selection JSON and figures, written here first (so `finish` can read every round back, also
# after a resume) and logged under the same artifact folder.
SELECTION_DIR = "selection"


class Coordinator:
    """Runs the federated rounds over a worker pool; see the module docstring."""

    def __init__(self, config: ExperimentConfig, federation: Federation, run_dir: str,
                 make_pool: Callable[[], WorkerPool], make_logger: Callable[[str | None], MetricLogger],
                 resume: FederationState | None = None):
        """Build the pool and the logger; start from `resume` (a saved state) or from the initial model.

        `make_logger(run_id)` opens the MLflow run `run_id` (a resumed run) or a new one when None.
        """
        self.cfg = config
        self.fed = federation
        self.run_dir = Path(run_dir)
        started = time.time()
        self.pool = make_pool()
        pool_made = time.time()
        # On Ray the client actors are starting already: the tracking run opens meanwhile.
        self.logger = make_logger(resume.mlflow_run_id if resume else None)
        logger_open = time.time()
        try:
            self.info = self.pool.model_info()
        except BaseException:
            self.logger.close("FAILED")
            raise
        info_ready = time.time()
        # Start-up, seconds: create the pool (in-process: the worker itself; Ray: handed over by the driver,
        # whose actors are already starting), open the tracking run, wait for the first worker's model info
        # (Ray: what is left of its process start, imports, store and model load); `worker_init` is what that
        # worker reports of its own start. `at`: the same steps as Unix times, for a start-up timeline.
        self.startup_seconds = {"pool": pool_made - started, "logger": logger_open - pool_made,
                                "model_info": info_ready - logger_open,
                                "worker_init": dict(self.info.worker_init_seconds),
                                "at": {"coordinator": started, "model_info": info_ready, "logger": logger_open,
                                       **self.info.worker_started_at}}
        self.selector = build_selector(config.selection, seed=config.seed)  # a seeded `random` survives --resume
        self.state = resume or FederationState(0, dict(self.info.initial_tensors))
        self.state.mlflow_run_id = self.logger.run_id
        self.state.identity = run_identity(config, federation, self.info.units)
        # Each client's own tensors, when the workers declare some (`ModelInfo.client_state_names`).
        self.client_states = (ClientStateStore(self.run_dir / CLIENT_STATE_DIR, self.state.client_states)
                              if self.info.client_state_names else None)
        self._logged_ahead = self._rounds_logged_ahead(resume)
        if resume is not None and resume.last_log:
            self._send_last_log()  # the checkpointed round's records again: lost by a kill, or stored once
        # Changes whenever the global tensors change, so a worker serving many clients loads them once.
        self._version = self.state.round_idx
        self._reset_faults()
        self.progress_now = Progress(rounds=config.federation.rounds,
                                     round_seconds=[r["seconds"] for r in self.state.history if r["round"] > 0])

    # ----------------------------------------------------------------------------------------- loop
    def run(self) -> dict[str, Any]:
        """Initial evaluation (unless resumed past it), every remaining round, then the summary (`run_rounds`)."""
        return run_rounds(self, self.cfg.federation.rounds)

    def next_round(self) -> int:
        """The first round not completed yet (1 for a fresh run)."""
        return self.state.round_idx + 1

    def needs_initial_evaluation(self) -> bool:
        return not self.state.history

    def evaluate_initial(self) -> dict[str, Any]:
        """Round 0: the starting global model on every client's test split (no training)."""
        start = time.perf_counter()
        self._worker_seconds = {}
        laps = _Laps()
        evals = self._evaluate(GlobalState(self._version, self.state.tensors), 0)
        laps.lap("evaluate")
        record = self._record(0, start, evals, masks=None, scores=None, updates=[], failed=[], laps=laps)
        self._checkpoint_and_log()
        laps.lap("log")
        return record

    def run_round(self, round_idx: int) -> dict[str, Any]:
        """One round of docs/METHOD.md §4; returns the round's record (also appended to the history)."""
        start = time.perf_counter()
        self.progress_now.round_idx = round_idx
        self._reset_faults()
        # Wall seconds per phase (record["phase_seconds"]) and the workers' own compute seconds per phase
        # (record["worker_seconds"], summed over replies): their difference is dispatch + transfer + waiting.
        self._worker_seconds = {}
        laps = _Laps()
        # 1. Broadcast: every client starts from the same global tensors.
        state = GlobalState(self._version, self.state.tensors)
        # 2. Score: clients report per-unit importance on their data (only when the selector uses it).
        scores, failed = self._score(state, round_idx) if self.selector.needs_scores else (None, [])
        laps.lap("score")
        # 3. Select: the server turns scores and budgets into an (N, L) mask, data-free.
        # Full fine-tuning ignores budgets: every client trains all L units.
        budgets = np.array(self.fed.budgets) if getattr(self.selector, "respects_budgets", True) \
            else np.full(len(self.fed.clients), len(self.info.units))
        decision = self.selector.select(scores, budgets, len(self.info.units),
                                        numpy_rng(self.cfg.seed, round_idx, SELECT))
        masks = decision.masks  # (N, L) bool
        check_mask(masks, budgets, len(self.info.units))
        laps.lap("select")
        # 4. Train: each client trains its selected units and uploads only those. Failed clients and
        #    rejected (non-finite) updates are left out; too few usable updates stop the run here,
        #    before anything of this round is aggregated or checkpointed.
        # 5. Aggregate: masked FedAvg weighted by |D_i|; units nobody trained keep their value. Uploads
        #    sent in a narrower `federation.upload_dtype` are cast back to the global dtype first. Each
        #    update is folded into a running sum as it arrives (in client order) and its tensors dropped,
        #    so the coordinator's memory does not grow with the number of clients; the sum is applied
        #    only after training succeeded.
        updates, train_failed, average = self._train(state, masks, round_idx)
        laps.lap("train")
        self.state.tensors = average.result()
        self._version += 1
        laps.lap("aggregate")
        # 6. Evaluate: the new global model on every client's test split.
        evals = self._evaluate(GlobalState(self._version, self.state.tensors), round_idx)
        self._note_failures("evaluate", evals)
        laps.lap("evaluate")
        # 7. Log and checkpoint.
        record = self._record(round_idx, start, evals, masks, scores, updates, failed + train_failed,
                              down_bytes=state.num_bytes, decision=decision, laps=laps)
        self._add_fault_details(record)
        self.state.round_idx = round_idx
        self._checkpoint_and_log()
        # After the metrics went out: in the record (and the next round's checkpoint) only.
        laps.lap("log")
        return record

    def finish(self, status: str = "FINISHED") -> dict[str, Any]:
        """Summary of the run (also logged as `summary.json`); closes the MLflow run."""
        last = self.state.history[-1]
        summary = {
            "rounds": self.state.round_idx,
            "final": evaluation.final_summary(last, self.fed.client_kinds),
            "history": self.state.history,
            "majority_baseline": evaluation.baseline_summary(self.fed.majority_baseline, self.fed.majority_f1,
                                                             self.fed.client_kinds),
            "mlflow_run_id": self.logger.run_id,
            "mlflow_experiment_id": getattr(self.logger, "experiment_id", None),
            "bytes_up_total": int(sum(r["bytes_up"] for r in self.state.history)),
            "bytes_down_total": int(sum(r["bytes_down"] for r in self.state.history)),
            "state_bytes_total": int(sum(r.get("state_bytes", 0) for r in self.state.history)),
            "units": list(self.info.units),
            "unit_num_parameters": self.info.unit_num_parameters,
            "startup_seconds": self.startup_seconds,
        }
        self._log_unit_ranks()
        self.logger.log_dict(summary, "summary.json")
        self.logger.close(status)
        self.pool.shutdown()
        return summary

    def abort(self, status: str = "KILLED") -> None:
        """End the run without a summary: close the MLflow run with `status`, stop the pool's workers.

        For a run stopped from outside (a sweep scheduler ending a trial early); the last completed
        round's checkpoint stays in the run directory.
        """
        self.logger.close(status)
        self.pool.shutdown()

    def run_info(self) -> dict[str, Any]:
        """Where this run lives: its MLflow run id and the node of each worker (pools that can tell)."""
        node_ids = getattr(self.pool, "node_ids", None)
        return {"mlflow_run_id": self.logger.run_id, "client_nodes": list(node_ids()) if node_ids else []}

    def progress(self) -> Progress:
        return self.progress_now

    # --------------------------------------------------------------------------------------- phases
    def _score(self, state: GlobalState, round_idx: int) -> tuple[np.ndarray, list[str]]:
        tasks = [ScoreTask(c, round_idx, derive_seed(self.cfg.seed, round_idx, i, SCORE))
                 for i, c in enumerate(self.fed.clients)]
        replies = self._map("score", state, tasks)
        self._note_failures("score", replies)
        uniform = np.full(len(self.info.units), 1.0 / len(self.info.units))
        # A client that failed to score is ranked uniformly this round; it still gets to train.
        scores = np.stack([r.scores if isinstance(r, ScoreReport) else uniform for r in replies])  # (N, L)
        return scores, [r.client for r in replies if isinstance(r, WorkerError)]

    def _train(self, state: GlobalState, masks: np.ndarray,
               round_idx: int) -> tuple[list["UpdateSummary"], list[str], RunningFedAvg]:
        """Summaries of the usable updates in client order, the clients that failed or were rejected, and
        the running masked FedAvg of the usable updates (not yet applied to the global state).

        A client fails when its task still failed after the pool's retries, or when its update holds
        NaN/Inf (or a non-finite loss): it is left out of this round's average. With fewer than
        `federation.min_clients` usable updates the failed clients' training is retried once (their
        updates are folded in after the first pass's); still too few stops the run
        (`TooFewClientsError`) before anything of this round is applied.
        """
        tasks = [TrainTask(c, round_idx, derive_seed(self.cfg.seed, round_idx, i, TRAIN), tuple(map(bool, masks[i])))
                 for i, c in enumerate(self.fed.clients)]
        average = RunningFedAvg(self.state.tensors)
        usable, problems = self._fold_updates(state, tasks, average)
        minimum = self.cfg.federation.min_clients
        failed = [task for task in tasks if task.client not in usable]
        if len(usable) < minimum and failed:
            for task in failed:
                self._retries.setdefault(task.client, []).append(f"train (round retry): {problems[task.client]}")
            usable_again, problems_again = self._fold_updates(state, failed, average)
            usable.update(usable_again)
            problems.update(problems_again)
        failed = [task.client for task in tasks if task.client not in usable]
        for client in failed:
            self._failures.setdefault(client, []).append(f"train: {problems[client]}")
        if len(usable) < minimum:
            reasons = "; ".join(f"{client}: {problems[client]}" for client in failed)
            raise TooFewClientsError(
                f"round {round_idx}: only {len(usable)} of {len(tasks)} clients reported a usable update, "
                f"fewer than federation.min_clients={minimum} (after retrying the round's training once); "
                f"failed: {reasons}. The checkpoint of round {self.state.round_idx} is intact: "
                f"`f3ocus run --resume {self.run_dir}` continues from there.")
        return [usable[task.client] for task in tasks if task.client in usable], failed, average

    def _fold_updates(self, state: GlobalState, tasks: list[TrainTask],
                      average: RunningFedAvg) -> tuple[dict[str, "UpdateSummary"], dict[str, str]]:
        """Run `tasks` and fold every usable update into `average` as it arrives, in task order.

        An update that arrives before an earlier task's reply waits for it (at most about one per
        worker), so the sum is the same as averaging all updates in client order at the end. Once
        folded, an update's tensors are released (`ClientUpdate.release_tensors`: the pool still holds
        the reply object until the phase ends). Returns {client: summary} of the usable updates and
        {client: why not} of the others; an upload outside the client's selection raises after the phase.
        """
        index = {task.client: i for i, task in enumerate(tasks)}
        usable: dict[str, UpdateSummary] = {}
        problems: dict[str, str] = {}
        arrived: dict[int, ClientUpdate | None] = {}  # task index -> update to fold (None: nothing to fold)
        protocol_errors: list[Exception] = []
        state_sizes: dict[str, int] = {}  # client -> bytes of the state its update brought back
        next_to_fold = 0

        seen: set[str] = set()

        def consume(reply: object) -> None:
            nonlocal next_to_fold
            seen.add(reply.client)
            i = index[reply.client]
            arrived[i] = None
            if isinstance(reply, WorkerError):
                problems[reply.client] = reply.message
            else:
                try:
                    self._check_upload(reply, tasks[i].mask)
                except RuntimeError as error:
                    protocol_errors.append(error)
                    return
                problem = _non_finite(reply)
                if problem:  # not aggregated; a client with state keeps its previous one
                    problems[reply.client] = f"rejected: {problem}"
                else:
                    state_sizes[reply.client] = self._keep_client_state(reply, tasks[i].round_idx)
                    arrived[i] = reply
            while next_to_fold in arrived:
                update = arrived.pop(next_to_fold)
                next_to_fold += 1
                if update is not None and not protocol_errors:
                    average.add(update.num_examples, self._to_global_dtype(update.tensors))
                    usable[update.client] = UpdateSummary(update.client, update.num_examples, update.train_loss,
                                                          update.num_bytes, state_sizes.get(update.client, 0))
                    update.release_tensors()

        for reply in self._map("train", state, tasks, consume):
            if reply.client not in seen:  # a pool that did not report this reply as it arrived
                consume(reply)
        if protocol_errors:
            raise protocol_errors[0]
        return usable, problems

    def _keep_client_state(self, update: ClientUpdate, round_idx: int) -> int:
        """Store the state a usable update brings back (methods with client state), count it, release it;
        returns its bytes (0 without client state)."""
        if self.client_states is None:
            return 0
        self._state_bytes += update.state_bytes
        self.client_states.save(update.client, round_idx, update.client_state)
        size = update.state_bytes
        update.release_client_state()
        return size

    def _attach_client_state(self, task: TrainTask | EvalTask) -> TrainTask | EvalTask:
        """`task` with its client's stored state (None for a client without one yet), as the pool sends it."""
        state = self.client_states.load(task.client)
        self._state_bytes += tensor_bytes(state or {})
        return replace(task, client_state=state)

    def _to_global_dtype(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An upload's tensors in the dtype of the global state (a float16/bfloat16 upload back to float32)."""
        return {name: t.to(self.state.tensors[name].dtype) if name in self.state.tensors else t
                for name, t in tensors.items()}

    def _check_upload(self, update: ClientUpdate, mask: tuple[bool, ...]) -> None:
        """A client may upload exactly its selected units (+ its task's head), and return exactly the declared
        client-state tensors (none when the method keeps none); anything else is a protocol error."""
        allowed = {n for unit, chosen in zip(self.info.units, mask) if chosen
                   for n in self.info.unit_parameter_names[unit]}
        allowed |= set(self._head_names(update.client)) if self.cfg.federation.train_head else set()
        extra = set(update.tensors) - allowed
        if extra:
            raise RuntimeError(f"client {update.client} uploaded tensors outside its selection: {sorted(extra)[:3]}")
        declared = set(self.info.client_state_names)
        returned = set(update.client_state or {})
        if returned != declared and (declared or update.client_state is not None):
            raise RuntimeError(f"client {update.client} returned client-state tensors {sorted(returned)[:3]}, not "
                               f"the declared {sorted(declared)[:3]}")

    def _head_names(self, client: str) -> tuple[str, ...]:
        """The head tensors `client` trains: its task's head (a VQA client must not send the untouched
        multi-label head, which would pull that head's average back to the broadcast), or every head when
        the client's kind or the model's per-task heads are unknown."""
        kind = self.fed.client_kinds.get(client)
        if kind is not None and kind in self.info.task_heads:
            return self.info.task_heads[kind]
        return tuple(self.info.unit_parameter_names.get("head", ()))

    def _evaluate(self, state: GlobalState, round_idx: int) -> list[EvalReport | WorkerError]:
        return self._map("evaluate", state, [EvalTask(c, round_idx) for c in self.fed.clients])

    def _map(self, phase: str, state: GlobalState, tasks: list,
             consume: Callable[[object], None] | None = None) -> list:
        """Run `tasks` on the pool; `consume(reply)` is called on every final reply as soon as it arrives."""
        self.progress_now.phase, self.progress_now.done, self.progress_now.total = phase, 0, len(tasks)

        def on_done(reply: object) -> None:
            if consume is not None:
                consume(reply)
            self.progress_now.done += 1

        faults = getattr(self.pool, "faults", None)  # FaultLog of the pools in f3ocus.federated.pool
        seen = (len(faults.retries), faults.actors_replaced) if faults else (0, 0)
        # Training and evaluation read the client's own state (scoring is on the broadcast model alone).
        attach = self._attach_client_state if self.client_states is not None and phase != "score" else None
        replies = self.pool.map(phase, state, tasks, on_done, attach)
        compute = sum(getattr(reply, "seconds", 0.0) for reply in replies if not isinstance(reply, WorkerError))
        self._worker_seconds[phase] = self._worker_seconds.get(phase, 0.0) + compute
        if faults:
            for client, reason in faults.retries[seen[0]:]:
                self._retries.setdefault(client, []).append(f"{phase}: {reason}")
            self._actors_replaced += faults.actors_replaced - seen[1]
        return replies

    # --------------------------------------------------------------------------------- client faults
    def _reset_faults(self) -> None:
        """Per-round bookkeeping: failure reason per client, retried attempts, replaced actors, client-state bytes."""
        self._state_bytes = 0  # client state moved between coordinator and workers, both ways
        self._failures: dict[str, list[str]] = {}
        self._retries: dict[str, list[str]] = {}
        self._actors_replaced = 0
        self._worker_seconds: dict[str, float] = {}

    def _note_failures(self, phase: str, replies: list) -> None:
        for reply in replies:
            if isinstance(reply, WorkerError):
                self._failures.setdefault(reply.client, []).append(f"{phase}: {reply.message}")

    def _add_fault_details(self, record: dict[str, Any]) -> None:
        """Why clients failed and what the pool retried, next to the round's `failed_clients`."""
        record["failure_reasons"] = {c: "; ".join(self._failures.get(c, ())) for c in record["failed_clients"]}
        record["retries"] = {client: len(reasons) for client, reasons in sorted(self._retries.items())}
        record["retry_reasons"] = dict(sorted(self._retries.items()))
        record["actors_replaced"] = self._actors_replaced

    # -------------------------------------------------------------------------------------- logging
    def _record(self, round_idx: int, start: float, evals: list, masks: np.ndarray | None,
                scores: np.ndarray | None, updates: list[UpdateSummary], failed: list[str],
                down_bytes: int = 0, decision: SelectionResult | None = None,
                laps: _Laps | None = None) -> dict[str, Any]:
        reports = [r for r in evals if isinstance(r, EvalReport)]
        failed = sorted(set(failed) | {r.client for r in evals if isinstance(r, WorkerError)})
        if not reports:
            raise RuntimeError(f"round {round_idx}: every client failed to evaluate: {evals}")
        record = {
            "round": round_idx,
            # accuracy, loss, score, per_client (+ f1, f1_macro, subset_accuracy with multi-label clients)
            **evaluation.summarise_reports(reports, self.fed.client_kinds),
            "train_loss": float(np.mean([u.train_loss for u in updates])) if updates else None,
            "bytes_up": int(sum(u.num_bytes for u in updates)),
            "bytes_down": int(down_bytes * len(self.fed.clients)),
            "bytes_up_per_client": {u.client: u.num_bytes for u in updates},
            # Client state sent with tasks and returned with updates (never leaves a real client): apart from bytes_up.
            "state_bytes": int(self._state_bytes),
            "state_bytes_up_per_client": {u.client: u.state_bytes for u in updates if u.state_bytes},
            "seconds": time.perf_counter() - start,
            # The same dict objects as `laps.seconds` / the worker sums: "log" is added after logging.
            "phase_seconds": laps.seconds if laps is not None else {},
            "worker_seconds": dict(self._worker_seconds),
            "failed_clients": failed,
            "selected": None if masks is None else {
                c: [u for u, chosen in zip(self.info.units, masks[i]) if chosen] for i, c in enumerate(self.fed.clients)},
        }
        # Lazy: the artifacts module pulls in pymoo (objectives) and, when drawing, matplotlib.
        from f3ocus.tracking import selection_artifacts

        payload = None if masks is None else selection_artifacts.round_payload(
            round_idx, self.fed.clients, self.info.units, masks, scores, decision)
        # Small per-round summary for result.json: importance, variance, front_size.
        record["selection"] = None if payload is None else selection_artifacts.round_summary(payload)
        self.state.history.append(record)
        if round_idx > 0:
            self.progress_now.round_seconds.append(record["seconds"])
        self._log(record, payload)
        return record

    def _checkpoint_and_log(self) -> None:
        """Write the checkpoint, then send the round's metrics (`state.last_log`).

        In this order a kill between the two leaves the round checkpointed and its records in the
        checkpoint, which a resumed run sends again (`__init__`); the other order would redo and log the
        round a second time. Selection artifacts are logged earlier: an artifact logged again replaces itself.
        """
        if self.state.last_log["step"] in self._logged_ahead:
            self.state.last_log = None  # logged before its checkpoint was lost: those records stay, none are sent
        self.state.mlflow_run_id = self.logger.run_id  # a run created late (MLflow was down) gets its id here
        if self.client_states is not None:
            self.state.client_states = self.client_states.index()
        self.state.save(self.run_dir / CHECKPOINT)
        if self.client_states is not None:
            self.client_states.commit()
        self._send_last_log()

    def _send_last_log(self) -> None:
        last = self.state.last_log
        if last is not None:
            self.logger.log_metrics(last["metrics"], last["step"], timestamp_ms=last["timestamp_ms"])

    def _rounds_logged_ahead(self, resume: FederationState | None) -> set[int]:
        """Rounds after the resumed one whose metrics are already logged: only after a fallback to the previous
        checkpoint (the lost one was written, and its round's metrics possibly sent, before the failure).

        Asked of the logger (`logged_steps`); when it cannot tell (MLflow unreachable), nothing is skipped.
        """
        if resume is None or resume.loaded_from is None or resume.loaded_from.name != PREVIOUS_CHECKPOINT:
            return set()
        logged_steps = getattr(self.logger, "logged_steps", None)
        steps = logged_steps(names.EVAL_ACC) if logged_steps is not None else None
        return {step for step in steps or () if step > resume.round_idx}

    def _log(self, record: dict[str, Any], payload: dict[str, Any] | None) -> None:
        """Prepare the round's metric records (`state.last_log`, sent by `_checkpoint_and_log`); with a
        selection `payload` (rounds >= 1) write and log its artifacts now."""
        step = record["round"]
        metrics = {names.EVAL_ACC: record["accuracy"], names.EVAL_LOSS: record["loss"],
                   names.COMM_BYTES_UP: record["bytes_up"], names.COMM_BYTES_DOWN: record["bytes_down"],
                   names.COMM_STATE_BYTES: record["state_bytes"],
                   names.ROUND_SECONDS: record["seconds"], names.FED_FAILED: len(record["failed_clients"])}
        for client, values in record["per_client"].items():
            metrics[names.client_metric(client, "acc")] = values["accuracy"]
            metrics[names.client_metric(client, "loss")] = values["loss"]
        for client, num_bytes in record["bytes_up_per_client"].items():
            metrics[names.client_metric(client, "bytes_up")] = num_bytes
        metrics.update(evaluation.score_metrics(record))
        if record["train_loss"] is not None:
            metrics[names.TRAIN_LOSS] = record["train_loss"]
        for phase, seconds in record["phase_seconds"].items():
            metrics[names.time_metric(phase)] = seconds
        if payload is not None:
            metrics.update(self._log_selection(payload))
        self.state.last_log = {"step": step, "timestamp_ms": int(time.time() * 1000),
                               "metrics": {key: float(value) for key, value in metrics.items()}}

    def _log_selection(self, payload: dict[str, Any]) -> dict[str, float]:
        """Write and log `selection/round_NNN.json` and, when the selector has a front, `front_round_NNN.png`.

        Returns the round's `select/*` metrics (importance only with scores, front_size only with a front).
        """
        from f3ocus.tracking import selection_artifacts

        step = payload["round"]
        folder = self.run_dir / SELECTION_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"round_{step:03d}.json"
        path.write_text(json.dumps(payload))
        self.logger.log_artifact(path, SELECTION_DIR)
        objectives = payload["objectives"]
        metrics = {names.SELECT_DISTINCT_UNITS: payload["distinct_units"],
                   names.SELECT_VARIANCE: objectives["variance"], names.SELECT_SOLVER_SECONDS: payload["seconds"]}
        if objectives["importance"] is not None:
            metrics[names.SELECT_IMPORTANCE] = objectives["importance"]
        if payload["front"]:
            metrics[names.SELECT_FRONT_SIZE] = len(payload["front"])
            figure = selection_artifacts.render_front(folder / f"front_round_{step:03d}.png", payload["front"],
                                                      payload["chosen"], step)
            self.logger.log_artifact(figure, SELECTION_DIR)
        return metrics

    def _log_unit_ranks(self) -> None:
        """At the end: `selection/unit_ranks.json` + `unit_ranks.png` (paper Fig. 5) from every scored round.

        Reads the per-round JSON back from the run directory, so a resumed run covers its earlier rounds too.
        Nothing is written when no round had scores (rule-based selectors).
        """
        from f3ocus.tracking import selection_artifacts

        folder = self.run_dir / SELECTION_DIR
        payloads = [json.loads(path.read_text()) for path in sorted(folder.glob("round_*.json"))]
        history = selection_artifacts.rank_history([p for p in payloads if p["round"] <= self.state.round_idx])
        if history is None:
            return
        path = folder / "unit_ranks.json"
        path.write_text(json.dumps(history))
        self.logger.log_artifact(path, SELECTION_DIR)
        figure = selection_artifacts.render_rank_heatmap(folder / "unit_ranks.png", history)
        self.logger.log_artifact(figure, SELECTION_DIR)

