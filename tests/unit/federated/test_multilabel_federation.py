"""Task-heterogeneous federations (docs/METHOD.md §5 T6): VQA clients scored by accuracy, multi-label clients by
F1; each client trains and uploads only its own task's head; eval/score averages the two."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from f3ocus.config.schema import ExperimentConfig, FederationConfig, ModelConfig, SelectionConfig, TrackingConfig
from f3ocus.federated import evaluation
from f3ocus.federated.coordinator import Coordinator
from f3ocus.federated.state import Federation, Progress
from f3ocus.federated.messages import ClientUpdate, EvalReport, ModelInfo
from f3ocus.federated.progress import format_round
from f3ocus.tracking import names
from f3ocus.tracking.base import NullLogger
from tests.unit.federated.record_factory import make_record
from tests.unit.federated.test_coordinator import UNITS, FakePool

KINDS = {"c0": "vqa", "c1": "vqa", "c2": "multilabel"}


def _reports():
    return [EvalReport("c0", 0.6, 1.0, 10, 0.0), EvalReport("c1", 0.4, 2.0, 10, 0.0),
            EvalReport("c2", 0.25, 0.5, 8, 0.0, kind="multilabel", f1=0.7, f1_macro=0.5, auroc_macro=0.8)]


# ------------------------------------------------------------------------------------ pure summaries
def test_round_summary_of_a_mixed_federation():
    summary = evaluation.summarise_reports(_reports(), KINDS)
    assert summary["accuracy"] == pytest.approx(0.5)  # VQA clients only
    assert summary["score"] == pytest.approx((0.6 + 0.4 + 0.7) / 3)  # accuracy, accuracy, micro-F1
    assert summary["f1"] == pytest.approx(0.7) and summary["f1_macro"] == pytest.approx(0.5)
    assert summary["subset_accuracy"] == pytest.approx(0.25) and summary["auroc_macro"] == pytest.approx(0.8)
    assert summary["loss"] == pytest.approx(3.5 / 3)
    assert summary["per_client"]["c2"] == {"accuracy": 0.25, "loss": 0.5, "n": 8, "kind": "multilabel",
                                           "score": 0.7, "f1": 0.7, "f1_macro": 0.5, "auroc_macro": 0.8}
    assert summary["per_client"]["c0"] == {"accuracy": 0.6, "loss": 1.0, "n": 10, "kind": "vqa", "score": 0.6}
    metrics = evaluation.score_metrics(make_record(**summary))
    assert metrics == {names.EVAL_SCORE: summary["score"], names.EVAL_F1: 0.7, names.EVAL_F1_MACRO: 0.5,
                       names.EVAL_AUROC_MACRO: 0.8, names.EVAL_SUBSET_ACC: 0.25, "client/c2/f1": 0.7,
                       "client/c2/f1_macro": 0.5, "client/c2/auroc_macro": 0.8}


def test_classification_only_federation_reports_subset_accuracy_as_eval_acc():
    reports = [EvalReport("a", 0.5, 1.0, 4, 0.0, kind="multilabel", f1=0.8, f1_macro=0.6),
               EvalReport("b", 0.25, 1.0, 4, 0.0, kind="multilabel", f1=0.4, f1_macro=0.2)]
    summary = evaluation.summarise_reports(reports, {"a": "multilabel", "b": "multilabel"})
    assert summary["accuracy"] == pytest.approx(0.375) == summary["subset_accuracy"]
    assert summary["score"] == pytest.approx(0.6) == summary["f1"]
    assert evaluation.final_summary(make_record(round=2, **summary), {})["metric"] == "f1"


def test_vqa_only_summary_is_the_plain_mean_accuracy_without_f1():
    summary = evaluation.summarise_reports(_reports()[:2], {})
    assert summary["accuracy"] == summary["score"] == pytest.approx(0.5)
    assert "f1" not in summary
    assert evaluation.final_summary(make_record(**summary), {})["metric"] == "accuracy"


def test_majority_baseline_scores_multilabel_clients_by_f1():
    baseline = evaluation.baseline_summary({"c0": 0.5, "c1": 0.3, "c2": 0.2}, {"c2": 0.4}, KINDS)
    assert baseline["accuracy"] == pytest.approx(0.4)  # as eval/acc: VQA clients only
    assert baseline["f1"] == pytest.approx(0.4) and baseline["per_client_f1"] == {"c2": 0.4}
    assert baseline["score"] == pytest.approx((0.5 + 0.3 + 0.4) / 3)


def test_progress_line_shows_f1_and_score_when_there_are_multilabel_clients():
    record = make_record(accuracy=0.5, loss=1.0, f1=0.7, score=0.6)
    assert "acc 0.500 f1 0.700 score 0.600 loss" in format_round(record, Progress(rounds=2))
    assert " f1 " not in format_round(replace(record, f1=None), Progress(rounds=2))


# --------------------------------------------------------------------------- coordinator on a fake pool
class TwoHeadPool(FakePool):
    """FakePool whose model has a VQA head and a multi-label head; c2 is the multi-label client."""

    def __init__(self, cheat: bool = False):
        super().__init__()
        self.cheat = cheat

    def model_info(self):
        names_ = {u: (f"{u}.w",) for u in UNITS}
        names_["head"] = ("head.w", "multilabel_head.w")
        tensors = {name: torch.zeros(2) for tensor_names in names_.values() for name in tensor_names}
        return ModelInfo(UNITS, names_, {u: 2 * len(n) for u, n in names_.items()}, tensors,
                         task_heads={"vqa": ("head.w",), "multilabel": ("multilabel_head.w",)})

    def train(self, state, task):
        k = int(task.client[-1])
        head = "multilabel_head.w" if KINDS[task.client] == "multilabel" or (self.cheat and k == 0) else "head.w"
        chosen = [f"{u}.w" for u, m in zip(UNITS, task.mask) if m] + [head]
        if self.cheat and k == 0:
            chosen.append("head.w")
        tensors = {name: state.tensors[name] + (k + 1) for name in chosen}
        return ClientUpdate(task.client, 10 * (k + 1), tensors, 1.0, 0.0)

    def evaluate(self, state, task):
        if KINDS[task.client] == "multilabel":
            return EvalReport(task.client, 0.25, 0.5, 8, 0.0, kind="multilabel", f1=0.75, f1_macro=0.5)
        return EvalReport(task.client, 0.5, 1.0, 10, 0.0)


class RecordingLogger(NullLogger):
    def __init__(self):
        self.metrics: dict[int, dict[str, float]] = {}

    def log_metrics(self, metrics, step, timestamp_ms=None):
        self.metrics.setdefault(step, {}).update(metrics)


def _coordinator(tmp_path, pool, logger=None):
    cfg = ExperimentConfig(federation=FederationConfig(rounds=1, budgets=(1, 1, 1)),
                           selection=SelectionConfig(method="first_k"), tracking=TrackingConfig(mlflow=False))
    federation = Federation(("c0", "c1", "c2"), {"c0": 10, "c1": 20, "c2": 30}, (1, 1, 1),
                            {"c0": 0.5, "c1": 0.3, "c2": 0.2}, client_kinds=KINDS, majority_f1={"c2": 0.4})
    return Coordinator(cfg, federation, str(tmp_path), lambda: pool, lambda run_id: logger or NullLogger())


def test_each_head_is_averaged_over_its_own_tasks_clients_and_the_run_logs_score_and_f1(tmp_path):
    logger = RecordingLogger()
    coordinator = _coordinator(tmp_path, TwoHeadPool(), logger)
    summary = coordinator.run()
    tensors = coordinator.state.tensors
    assert torch.allclose(tensors["head.w"], torch.full((2,), (10 * 1 + 20 * 2) / 30))  # c0, c1 only
    assert torch.allclose(tensors["multilabel_head.w"], torch.full((2,), 3.0))  # c2 only
    assert summary["history"][1]["bytes_up_per_client"] == {"c0": 16, "c1": 16, "c2": 16}
    logged = logger.metrics[1]
    assert logged[names.EVAL_ACC] == pytest.approx(0.5) and logged[names.EVAL_F1] == pytest.approx(0.75)
    assert logged[names.EVAL_SCORE] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    assert logged["client/c2/f1"] == pytest.approx(0.75) and "client/c0/f1" not in logged
    assert summary["final"]["score"] == pytest.approx(logged[names.EVAL_SCORE])
    assert summary["final"]["f1"] == pytest.approx(0.75) and summary["final"]["metric"] == "accuracy+f1"
    assert summary["final"]["per_client"]["c2"]["kind"] == "multilabel"
    assert summary["majority_baseline"]["f1"] == pytest.approx(0.4)


def test_a_vqa_client_uploading_the_multilabel_head_is_rejected(tmp_path):
    coordinator = _coordinator(tmp_path, TwoHeadPool(cheat=True))
    with pytest.raises(RuntimeError, match=r"c0 uploaded tensors outside its selection: \['multilabel_head.w'\]"):
        coordinator.run_round(1)


# --------------------------------------------------------------------- end to end on a real local pool
@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    """2 VQA clients + 2 multi-label clients, 10 train + 4 test rows each."""
    from f3ocus.data.store import FederatedStore
    from tests.unit.data.test_store_multilabel import rows_of

    rng = np.random.default_rng(0)
    findings = ["no finding", "edema", "cardiomegaly|effusion", "mass", "effusion|mass|nodule"]
    clients = {}
    for client in ("cxr_a", "cxr_b", "vqa_a", "vqa_b"):
        pool = findings if client.startswith("cxr") else ["yes", "no", "red", "blue"]
        clients[client] = [("train" if i < 10 else "test", pool[int(rng.integers(len(pool)))]) for i in range(14)]
    return FederatedStore.save(rows_of(clients, size=16), tmp_path_factory.mktemp("mixed") / "store")


def test_a_mixed_federation_runs_end_to_end_on_the_local_pool(tmp_path, mixed_store):
    from f3ocus.federated.pool import LocalPool
    from f3ocus.federated.worker import ClientWorker, WorkerSpec

    uploads: dict[str, list[list[str]]] = {}

    class RecordingWorker(ClientWorker):
        def train(self, state, task):
            update = super().train(state, task)
            uploads.setdefault(task.client, []).append(sorted(update.tensors))
            return update

    # Prepare: what `f3ocus.experiment.prepare` builds from a store.
    store = mixed_store
    clients = tuple(store.clients)
    majority = {c: store.majority_scores(c) for c in clients}
    federation = Federation(clients, {c: store.num_examples(c) for c in clients}, (2,) * len(clients),
                            {c: m["accuracy"] for c, m in majority.items()},
                            client_kinds={c: store.task_kind(c) for c in clients},
                            majority_f1={c: m["f1"] for c, m in majority.items() if "f1" in m})
    cfg = ExperimentConfig(model=ModelConfig(family="vilt", checkpoint="scratch"),
                           federation=FederationConfig(rounds=2, engine="local", budgets=2, batch_size=5),
                           selection=SelectionConfig(method="top_k", scorer="lntk", score_batch_size=4),
                           tracking=TrackingConfig(mlflow=False))
    spec = WorkerSpec(cfg, str(store.root), None, num_threads=1)
    logger = RecordingLogger()
    # Execute
    coordinator = Coordinator(cfg, federation, str(tmp_path), lambda: LocalPool(spec, worker_cls=RecordingWorker),
                              lambda run_id: logger)
    result = coordinator.run()
    # Assert: every round logs the unified score, F1 of the classification clients, accuracy of the VQA ones.
    for step in (0, 1, 2):
        logged = logger.metrics[step]
        assert {names.EVAL_SCORE, names.EVAL_F1, names.EVAL_F1_MACRO, names.EVAL_ACC} <= set(logged)
        per_client = result["history"][step]["per_client"]
        accuracies = [per_client[c]["accuracy"] for c in ("vqa_a", "vqa_b")]
        f1s = [per_client[c]["f1"] for c in ("cxr_a", "cxr_b")]
        assert logged[names.EVAL_ACC] == pytest.approx(np.mean(accuracies))
        assert logged[names.EVAL_F1] == pytest.approx(np.mean(f1s))
        assert logged[names.EVAL_SCORE] == pytest.approx(np.mean(accuracies + f1s))
        assert all(0.0 <= logged[f"client/{c}/f1"] <= 1.0 for c in ("cxr_a", "cxr_b"))
    # A client uploads its own head only, and is charged for exactly what it sent.
    info = coordinator.info
    for client, rounds in uploads.items():
        own, other = ("multilabel_head.", "head.") if client.startswith("cxr") else ("head.", "multilabel_head.")
        assert len(rounds) == 2
        assert all(any(n.startswith(own) for n in sent) and not any(n.startswith(other) for n in sent)
                   for sent in rounds)
        sent_bytes = sum(info.initial_tensors[name].numel() * 4 for name in rounds[-1])
        assert result["history"][2]["bytes_up_per_client"][client] == sent_bytes
    assert info.initial_tensors["multilabel_head.weight"].shape[0] == len(store.findings) == 15
    final = result["final"]
    assert final["metric"] == "accuracy+f1"
    assert {final["per_client"][c]["kind"] for c in clients} == {"vqa", "multilabel"}
    assert np.isfinite(final["score"]) and np.isfinite(final["f1"])
    assert set(result["majority_baseline"]["per_client_f1"]) == {"cxr_a", "cxr_b"}


def test_sweep_trials_report_eval_score():
    from f3ocus.sweeps.spec import REPORTED_METRICS
    from f3ocus.sweeps.trainable import round_result

    record = make_record(accuracy=0.5, loss=1.0, bytes_up=1, bytes_down=2, train_loss=0.5, score=0.6, f1=0.7)
    assert round_result(record, {})[names.EVAL_SCORE] == 0.6
    assert names.EVAL_SCORE in REPORTED_METRICS  # a sweep may optimise it
