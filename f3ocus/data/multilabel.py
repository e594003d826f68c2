"""Multi-label classification rows (T4 Open-I, T5 MIMIC-CXR, the classification clients of T6) in the VQA schema.

A classification example is stored as a row of the one VQA schema (`f3ocus.data.schema.FEATURES`) so that
partitioners, the federated store and the bad-row policy need no second path:

- `question_type` = `MULTILABEL` marks the row as multi-label classification;
- `question` = `MULTILABEL_QUESTION` (a fixed prompt; the text tower still sees a question);
- `answer` = the present findings, sorted by `CXR_FINDINGS` order and joined with `SEPARATOR`
  (e.g. "cardiomegaly|effusion"); an image without any finding is labelled "no finding" (one of the 15);
- `label` = index in `CXR_FINDINGS` of the first present finding (what Dirichlet label-shift partitions by).

The model reads these rows through a separate multi-label head (15 logits, binary cross-entropy) and is
scored by F1 (see `f3ocus.models.training`). This module also owns the pure metric math shared by the model
evaluation and the majority baseline: `multi_hot` (answers -> (n, C) targets) and `f1_scores`:
- a class is predicted present when its sigmoid probability is >= 0.5;
- micro-F1 = 2·TP / (2·TP + FP + FN) over all (row, class) cells;
- macro-F1 = mean of the per-class F1 2·TP_c / (2·TP_c + FP_c + FN_c) over the classes that occur in the
  rows' targets or predictions (TP_c + FP_c + FN_c > 0); a class absent from both is left out (its F1 is
  0/0), a class only predicted counts as 0;
- zero-division rule: a zero denominator (no row, or no positive cell in targets nor predictions) gives 0.0,
  as `closed_set_accuracy` does for no rows (with "no finding" a class, every real row has a positive);
- subset accuracy = fraction of rows whose predicted set equals the target set exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

MULTILABEL = "multilabel"
MULTILABEL_QUESTION = "which findings are present in this image?"
SEPARATOR = "|"

# The 15 classes: the 14 ChestX-ray14 / Open-I findings + "no finding" (lower case, spaces, as answers are).
CXR_FINDINGS: tuple[str, ...] = (
    "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
    "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural thickening", "hernia",
    "no finding",
)
NO_FINDING = "no finding"


def encode_findings(findings: Iterable[str], classes: Sequence[str] = CXR_FINDINGS) -> str:
    """The `answer` string of a set of findings: known names in `classes` order, joined; empty -> "no finding".

    Raises:
        ValueError: a finding outside `classes`.
    """
    present = {finding.strip().lower() for finding in findings if finding.strip()}
    unknown = sorted(present - set(classes))
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; known: {list(classes)}")
    present.discard(NO_FINDING) if len(present) > 1 else None
    ordered = [name for name in classes if name in present]
    return SEPARATOR.join(ordered) if ordered else NO_FINDING


def decode_findings(answer: str) -> list[str]:
    """The findings of an `answer` string (inverse of `encode_findings`)."""
    return [part.strip() for part in answer.split(SEPARATOR) if part.strip()]


def is_multilabel(question_type: str) -> bool:
    """Whether a row with this `question_type` is a multi-label classification row."""
    return question_type == MULTILABEL


def multi_hot(answers: Sequence[str], classes: Sequence[str] = CXR_FINDINGS) -> np.ndarray:
    """(n, C) bool targets of n `answer` strings: column j is True when `classes[j]` is among the row's findings.

    Raises:
        ValueError: a finding outside `classes` (the message names the row).
    """
    column = {name: position for position, name in enumerate(classes)}
    targets = np.zeros((len(answers), len(classes)), dtype=bool)
    for row, answer in enumerate(answers):
        for finding in decode_findings(answer.strip().lower()):
            if finding not in column:
                raise ValueError(f"row {row}: unknown finding {finding!r} in answer {answer!r}; known: {list(classes)}")
            targets[row, column[finding]] = True
    return targets


def f1_scores(predicted: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(micro-F1, macro-F1) of (n, C) bool predictions against (n, C) bool targets (rules: module docstring).

    Raises:
        ValueError: the shapes differ.
    """
    predicted, targets = np.asarray(predicted, dtype=bool), np.asarray(targets, dtype=bool)
    if predicted.shape != targets.shape:
        raise ValueError(f"predictions {predicted.shape} and targets {targets.shape} differ in shape")
    true_pos = (predicted & targets).sum(axis=0)  # (C,)
    false_pos = (predicted & ~targets).sum(axis=0)  # (C,)
    false_neg = (~predicted & targets).sum(axis=0)  # (C,)
    denominator = 2 * true_pos + false_pos + false_neg  # (C,)
    micro = _ratio(2 * int(true_pos.sum()), int(denominator.sum()))
    occurring = denominator > 0
    macro = float(np.mean(2 * true_pos[occurring] / denominator[occurring])) if occurring.any() else 0.0
    return micro, macro


def macro_auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes of the area under the ROC curve of (n, C) scores against (n, C) bool targets.

    Unlike F1 at a fixed 0.5 threshold, it does not jump when the sigmoid outputs move across 0.5 together
    (a model that ranks the rows well but is uncalibrated still scores). Per class, AUROC is the probability
    that a positive row scores above a negative one, ties counting half (the Mann-Whitney statistic, from
    average ranks). A class without both a positive and a negative row has no AUROC and is left out of the
    mean; nan if no class has one.

    Raises:
        ValueError: the shapes differ.
    """
    from scipy.stats import rankdata

    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=bool)
    if scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} differ in shape")
    areas = []
    for column in range(targets.shape[1]):
        positive = targets[:, column]
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos and n_neg:
            ranks = rankdata(scores[:, column])  # average ranks: ties count half
            areas.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(areas)) if areas else float("nan")


def subset_accuracy(predicted: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of rows whose predicted set equals the target set (0.0 for no rows)."""
    predicted, targets = np.asarray(predicted, dtype=bool), np.asarray(targets, dtype=bool)
    return _ratio(int((predicted == targets).all(axis=1).sum()), int(targets.shape[0]))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0
