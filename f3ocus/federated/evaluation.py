"""What the clients' evaluation reports add up to, per round and for the majority baseline (docs/METHOD.md §5).

VQA clients are scored by accuracy (T1-T3), multi-label classification clients by F1 (T4-T6); a task-
heterogeneous federation (T6) has both. The round record, the MLflow metrics and `result.json` use:
- `score` (`eval/score`): mean over the evaluated clients of each client's score (accuracy for a VQA
  client, micro-F1 for a multi-label one): the one number the benchmark tables report;
- `accuracy` (`eval/acc`): mean accuracy over the VQA clients. A federation without VQA clients
  (T4/T5) reports the mean subset accuracy of its multi-label clients instead, so every run has an
  `eval/acc` (progress line, sweeps, dashboards); `metric` in the final summary says which headline applies;
- `f1`, `f1_macro`, `auroc_macro`, `subset_accuracy` (`eval/f1`, `eval/f1_macro`, `eval/auroc_macro`,
  `eval/subset_acc`): means over the multi-label clients, present only when the federation has one
  (macro-AUROC ranks the logits, so it does not flip as F1 does when outputs cross the 0.5 threshold);
- `loss` (`eval/loss`): mean over all clients (cross-entropy for VQA, BCE for multi-label clients).
Per client: `client/<c>/acc`, `/loss` for every client, `/f1`, `/f1_macro`, `/auroc_macro` for multi-label
clients.
Personalised evaluation (methods whose clients keep state, e.g. FedDAT): each client is also scored with its
own state on top of the broadcast (`EvalReport.personal`); the record's `personal` holds the means
(`eval/personal_acc`, `eval/personal_score`) and each `per_client` entry its `personal` accuracy, loss and
score (`client/<c>/personal_acc`, `client/<c>/personal_score`), next to the global model's.
Pure functions on messages and records: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from f3ocus.federated.messages import MULTILABEL, VQA, EvalReport
from f3ocus.tracking import names

if TYPE_CHECKING:  # records builds on this module
    from f3ocus.federated.records import RoundRecord

# `metric` of the final summary: which per-client score `score` averages.
METRIC_BY_KINDS = {(VQA,): "accuracy", (MULTILABEL,): "f1", (MULTILABEL, VQA): "accuracy+f1"}


def summarise_reports(reports: list[EvalReport], kinds: Mapping[str, str]) -> dict[str, Any]:
    """The round record's evaluation part: means over clients and the per-client entries.

    Args:
        reports: the evaluation replies that arrived (failed clients left out).
        kinds: client -> task kind of the whole federation (`Federation.client_kinds`); empty = the
            kinds the reports carry.

    Returns:
        {"accuracy", "loss", "score", "per_client"}, + {"f1", "f1_macro", "subset_accuracy"} when the
        federation has multi-label clients (a mean over no report is nan).
    """
    federation_kinds = set(kinds.values()) if kinds else {report.kind for report in reports}
    vqa = [report for report in reports if report.kind != MULTILABEL]
    multi = [report for report in reports if report.kind == MULTILABEL]
    summary: dict[str, Any] = {
        "accuracy": _mean(report.accuracy for report in (vqa if VQA in federation_kinds else multi)),
        "loss": _mean(report.loss for report in reports),
        "score": _mean(report.score for report in reports),
        "per_client": {report.client: client_entry(report) for report in reports},
    }
    if MULTILABEL in federation_kinds:
        summary.update(f1=_mean(report.f1 for report in multi), f1_macro=_mean(report.f1_macro for report in multi),
                       auroc_macro=_mean(report.auroc_macro for report in multi),
                       subset_accuracy=_mean(report.accuracy for report in multi))
    personal = [report.personal for report in reports if report.personal is not None]
    if personal:
        own = summarise_reports(personal, kinds)
        summary["personal"] = {key: own[key] for key in ("accuracy", "loss", "score")}
    return summary


def client_entry(report: EvalReport) -> dict[str, Any]:
    """A client's line of `per_client`: accuracy, loss, n, kind, score (+ f1, f1_macro for multi-label)."""
    entry = {"accuracy": report.accuracy, "loss": report.loss, "n": report.num_examples, "kind": report.kind,
             "score": report.score}
    if report.kind == MULTILABEL:
        entry.update(f1=report.f1, f1_macro=report.f1_macro, auroc_macro=report.auroc_macro)
    if report.personal is not None:
        entry["personal"] = {"accuracy": report.personal.accuracy, "loss": report.personal.loss,
                             "score": report.personal.score}
    return entry


def score_metrics(record: RoundRecord) -> dict[str, float]:
    """The round's `eval/score`, F1 metrics and per-client F1 (`eval/acc`, `eval/loss` are logged with the rest)."""
    metrics = {names.EVAL_SCORE: record.score}
    if record.f1 is not None:
        metrics.update({names.EVAL_F1: record.f1, names.EVAL_F1_MACRO: record.f1_macro,
                        names.EVAL_SUBSET_ACC: record.subset_accuracy})
        if record.auroc_macro is not None:  # absent in records written before it was measured (resumed runs)
            metrics[names.EVAL_AUROC_MACRO] = record.auroc_macro
    if record.personal is not None:
        metrics.update({names.EVAL_PERSONAL_ACC: record.personal["accuracy"],
                        names.EVAL_PERSONAL_SCORE: record.personal["score"]})
    for client, values in record.per_client.items():
        if values.get("kind") == MULTILABEL:
            metrics[names.client_metric(client, "f1")] = values["f1"]
            metrics[names.client_metric(client, "f1_macro")] = values["f1_macro"]
            if values.get("auroc_macro") is not None:  # None: a report from before it was measured
                metrics[names.client_metric(client, "auroc_macro")] = values["auroc_macro"]
        if "personal" in values:
            metrics[names.client_metric(client, "personal_acc")] = values["personal"]["accuracy"]
            metrics[names.client_metric(client, "personal_score")] = values["personal"]["score"]
    return metrics


def final_summary(record: RoundRecord, kinds: Mapping[str, str]) -> dict[str, Any]:
    """`result.json`'s "final": the last round's means and per-client entries, and which `metric` `score` is."""
    final = {key: getattr(record, key) for key in ("accuracy", "loss", "score", "f1", "f1_macro", "auroc_macro",
                                                   "subset_accuracy", "per_client", "personal")
             if getattr(record, key) is not None}  # None: not measured in this run (no multi-label client, ...)
    present = kinds.values() if kinds else (values.get("kind", VQA) for values in record.per_client.values())
    final["metric"] = METRIC_BY_KINDS.get(tuple(sorted(set(present))), "accuracy")
    return final


def baseline_summary(accuracy: Mapping[str, float], f1: Mapping[str, float],
                     kinds: Mapping[str, str]) -> dict[str, Any]:
    """The majority baseline, averaged like the run's metrics (see the module docstring).

    Args:
        accuracy: client -> accuracy of always giving its majority train answer (subset accuracy of its
            most frequent label set for a multi-label client).
        f1: multi-label client -> micro-F1 of that baseline.
        kinds: client -> task kind (missing: "vqa").

    Returns:
        {"accuracy", "per_client", "score", "per_client_score"}, + {"f1", "per_client_f1"} with multi-label clients.
    """
    kind = {client: kinds.get(client, VQA) for client in accuracy}
    vqa = [client for client in accuracy if kind[client] == VQA]
    scores = {client: f1[client] if kind[client] == MULTILABEL and client in f1 else value
              for client, value in accuracy.items()}
    summary: dict[str, Any] = {"accuracy": _mean(accuracy[client] for client in (vqa or accuracy)),
                               "per_client": dict(accuracy), "score": _mean(scores.values()),
                               "per_client_score": scores}
    if f1:
        summary.update(f1=_mean(f1.values()), per_client_f1=dict(f1))
    return summary


def _mean(values: Iterable[float | None]) -> float:
    """np.mean (as the single-task records always used) of the values given; nan for none."""
    kept = [value for value in values if value is not None]
    return float(np.mean(kept)) if kept else math.nan
