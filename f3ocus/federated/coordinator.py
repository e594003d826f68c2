"""The coordinator: holds the global state, runs selection and aggregation, and is the only logger.

`run_round` is docs/METHOD.md §4 step by step: broadcast -> score -> select -> train -> aggregate ->
evaluate -> log; the loop over rounds that calls it is `f3ocus.federated.rounds.run_rounds`. The
coordinator holds no model and sees no data: it knows the units, the tensors of the global state, client
names, example counts and budgets. It runs in-process (`LocalPool`, tests)
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

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from f3ocus.config.schema import ExperimentConfig
from f3ocus.federated import records
from f3ocus.federated.aggregate import RunningFedAvg
from f3ocus.federated.checkpoint import run_identity
from f3ocus.federated.client_state import CLIENT_STATE_DIR, ClientStateStore
from f3ocus.federated.messages import (ClientUpdate, EvalReport, EvalTask, GlobalState, ScoreReport, ScoreTask,
                                       TrainTask, WorkerError, tensor_bytes)
from f3ocus.federated.pool import WorkerPool
from f3ocus.federated.records import RoundRecord
from f3ocus.federated.round_tally import RoundTally
from f3ocus.federated.rounds import run_rounds
from f3ocus.federated.state import (CHECKPOINT, Federation, FederationState, Progress, TooFewClientsError,
                                    UpdateSummary)
from f3ocus.federated.uploads import check_upload, non_finite, to_global_dtype
from f3ocus.selection import SelectionResult, build_selector, check_mask
from f3ocus.tracking.base import MetricLogger
from f3ocus.utils.seeding import SCORE, SELECT, TRAIN, derive_seed, numpy_rng


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
        self._logged_ahead = records.rounds_logged_ahead(resume, self.logger)
        if resume is not None and resume.last_log:
            self._send_last_log()  # the checkpointed round's records again: lost by a kill, or stored once
        # Changes whenever the global tensors change, so a worker serving many clients loads them once.
        self._version = self.state.round_idx
        self.tally = RoundTally()  # the current round's counters (a fresh one per round)
        past = [RoundRecord.from_dict(plain) for plain in self.state.history]
        self.progress_now = Progress(rounds=config.federation.rounds,
                                     round_seconds=[r.seconds for r in past if r.round > 0])

    # ----------------------------------------------------------------------------------------- loop
    def run(self) -> dict[str, Any]:
        """Initial evaluation (unless resumed past it), every remaining round, then the summary (`run_rounds`)."""
        return run_rounds(self, self.cfg.federation.rounds)

    def next_round(self) -> int:
        """The first round not completed yet (1 for a fresh run)."""
        return self.state.round_idx + 1

    def needs_initial_evaluation(self) -> bool:
        return not self.state.history

    def evaluate_initial(self) -> RoundRecord:
        """Round 0: the starting global model on every client's test split (no training)."""
        start = time.perf_counter()
        tally = self.tally = RoundTally()
        evals = self._evaluate(GlobalState(self._version, self.state.tensors), 0)
        tally.lap("evaluate")
        record = self._record(0, start, evals, masks=None, scores=None, updates=[], failed=[])
        return self._checkpoint_and_log(record)

    def run_round(self, round_idx: int) -> RoundRecord:
        """One round of docs/METHOD.md §4; returns the round's record (its JSON form is in the history)."""
        start = time.perf_counter()
        self.progress_now.round_idx = round_idx
        # Wall and worker seconds per phase, failures, retries, client-state bytes (`RoundTally`).
        tally = self.tally = RoundTally()
        # 1. Broadcast: every client starts from the same global tensors.
        state = GlobalState(self._version, self.state.tensors)
        # 2. Score: clients report per-unit importance on their data (only when the selector uses it).
        scores, failed = self._score(state, round_idx) if self.selector.needs_scores else (None, [])
        tally.lap("score")
        # 3. Select: the server turns scores and budgets into an (N, L) mask, data-free.
        # Full fine-tuning ignores budgets: every client trains all L units.
        budgets = np.array(self.fed.budgets) if self.selector.respects_budgets \
            else np.full(len(self.fed.clients), len(self.info.units))
        decision = self.selector.select(scores, budgets, len(self.info.units),
                                        numpy_rng(self.cfg.seed, round_idx, SELECT))
        masks = decision.masks  # (N, L) bool
        check_mask(masks, budgets, len(self.info.units))
        tally.lap("select")
        # 4. Train: each client trains its selected units and uploads only those. Failed clients and
        #    rejected (non-finite) updates are left out; too few usable updates stop the run here,
        #    before anything of this round is aggregated or checkpointed.
        # 5. Aggregate: masked FedAvg weighted by |D_i|; units nobody trained keep their value. Uploads
        #    sent in a narrower `federation.upload_dtype` are cast back to the global dtype first. Each
        #    update is folded into a running sum as it arrives (in client order) and its tensors dropped,
        #    so the coordinator's memory does not grow with the number of clients; the sum is applied
        #    only after training succeeded.
        updates, train_failed, average = self._train(state, masks, round_idx)
        tally.lap("train")
        self.state.tensors = average.result()
        self._version += 1
        tally.lap("aggregate")
        # 6. Evaluate: the new global model on every client's test split.
        evals = self._evaluate(GlobalState(self._version, self.state.tensors), round_idx)
        tally.note_failures("evaluate", evals)
        tally.lap("evaluate")
        # 7. Log and checkpoint.
        record = self._record(round_idx, start, evals, masks, scores, updates, failed + train_failed,
                              down_bytes=state.num_bytes, decision=decision)
        self.state.round_idx = round_idx
        return self._checkpoint_and_log(record)

    def finish(self, status: str = "FINISHED") -> dict[str, Any]:
        """Summary of the run in its JSON form (`records.RunSummary`, also logged as `summary.json`); closes
        the MLflow run."""
        summary = records.run_summary(self.state, self.fed, self.info, self.logger, self.startup_seconds).to_dict()
        records.log_unit_ranks(self.logger, self.run_dir, self.state.round_idx)
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
        return {"mlflow_run_id": self.logger.run_id, "client_nodes": list(self.pool.node_ids())}

    def progress(self) -> Progress:
        return self.progress_now

    # --------------------------------------------------------------------------------------- phases
    def _score(self, state: GlobalState, round_idx: int) -> tuple[np.ndarray, list[str]]:
        tasks = [ScoreTask(c, round_idx, derive_seed(self.cfg.seed, round_idx, i, SCORE))
                 for i, c in enumerate(self.fed.clients)]
        replies = self._map("score", state, tasks)
        self.tally.note_failures("score", replies)
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
                self.tally.note_retry(task.client, f"train (round retry): {problems[task.client]}")
            usable_again, problems_again = self._fold_updates(state, failed, average)
            usable.update(usable_again)
            problems.update(problems_again)
        failed = [task.client for task in tasks if task.client not in usable]
        for client in failed:
            self.tally.note_failure(client, f"train: {problems[client]}")
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
                    check_upload(reply, tasks[i].mask, self.info, self.fed.client_kinds,
                                 self.cfg.federation.train_head)
                except RuntimeError as error:
                    protocol_errors.append(error)
                    return
                problem = non_finite(reply)
                if problem:  # not aggregated; a client with state keeps its previous one
                    problems[reply.client] = f"rejected: {problem}"
                else:
                    state_sizes[reply.client] = self._keep_client_state(reply, tasks[i].round_idx)
                    arrived[i] = reply
            while next_to_fold in arrived:
                update = arrived.pop(next_to_fold)
                next_to_fold += 1
                if update is not None and not protocol_errors:
                    average.add(update.num_examples, to_global_dtype(update.tensors, self.state.tensors))
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
        self.tally.state_bytes += update.state_bytes
        self.client_states.save(update.client, round_idx, update.client_state)
        size = update.state_bytes
        update.release_client_state()
        return size

    def _attach_client_state(self, task: TrainTask | EvalTask) -> TrainTask | EvalTask:
        """`task` with its client's stored state (None for a client without one yet), as the pool sends it."""
        state = self.client_states.load(task.client)
        self.tally.state_bytes += tensor_bytes(state or {})
        return replace(task, client_state=state)

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

        faults = self.pool.faults  # cumulative: this phase's share is what it adds
        seen = (len(faults.retries), faults.actors_replaced)
        # Training and evaluation read the client's own state (scoring is on the broadcast model alone).
        attach = self._attach_client_state if self.client_states is not None and phase != "score" else None
        replies = self.pool.map(phase, state, tasks, on_done, attach)
        self.tally.add_worker_seconds(phase, replies)
        for client, reason in faults.retries[seen[0]:]:
            self.tally.note_retry(client, f"{phase}: {reason}")
        self.tally.actors_replaced += faults.actors_replaced - seen[1]
        return replies

    # -------------------------------------------------------------------------------------- logging
    def _record(self, round_idx: int, start: float, evals: list, masks: np.ndarray | None,
                scores: np.ndarray | None, updates: list[UpdateSummary], failed: list[str],
                down_bytes: int = 0, decision: SelectionResult | None = None) -> RoundRecord:
        """The round's record (`records.round_record`) with its selection summary, added to the history and
        prepared for logging (`_log`). Every phase but `log` has run: the tally is complete but for it."""
        seconds = time.perf_counter() - start
        payload = None if masks is None else records.selection_payload(
            round_idx, self.fed.clients, self.info.units, masks, scores, decision)
        # Small per-round summary for result.json: importance, variance, front_size.
        selection = None if payload is None else records.selection_summary(payload)
        record = records.round_record(round_idx, seconds, evals, self.fed, self.info.units, masks, updates, failed,
                                      down_bytes, self.tally, selection)
        self.state.history.append(record.to_dict())
        if round_idx > 0:
            self.progress_now.round_seconds.append(record.seconds)
        self._log(record, payload)
        return record

    def _checkpoint_and_log(self, record: RoundRecord) -> RoundRecord:
        """Write the checkpoint, then send the round's metrics (`state.last_log`); returns `record` with the
        seconds this took (its `log` phase), which also replaces it in the history.

        In this order a kill between the two leaves the round checkpointed and its records in the
        checkpoint, which a resumed run sends again (`__init__`); the other order would redo and log the
        round a second time. Selection artifacts are logged earlier: an artifact logged again replaces itself.
        The `log` phase is known only after the checkpoint and the metrics went out, so this round's
        checkpoint and metrics go without it; the next round's checkpoint and `result.json` have it.
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
        self.tally.lap("log")
        record = record.with_log_seconds(self.tally.phase_seconds["log"])
        self.state.history[-1] = record.to_dict()
        return record

    def _send_last_log(self) -> None:
        last = self.state.last_log
        if last is not None:
            self.logger.log_metrics(last["metrics"], last["step"], timestamp_ms=last["timestamp_ms"])

    def _log(self, record: RoundRecord, payload: dict[str, Any] | None) -> None:
        """Prepare the round's metric records (`state.last_log`, sent by `_checkpoint_and_log`); with a
        selection `payload` (rounds >= 1) write and log its artifacts now."""
        metrics = records.round_metrics(record)
        if payload is not None:
            metrics.update(records.log_selection(self.logger, self.run_dir, payload))
        self.state.last_log = {"step": record.round, "timestamp_ms": int(time.time() * 1000),
                               "metrics": {key: float(value) for key, value in metrics.items()}}
