"""Multi-label classification rows (T4 Open-I, T5 MIMIC-CXR, the classification clients of T6) in the VQA schema.

A classification example is stored as a row of the one VQA schema (`f3ocus.data.schema.FEATURES`) so that
partitioners, the federated store and the bad-row policy need no second path:

- `question_type` = `MULTILABEL` marks the row as multi-label classification;
- `question` = `MULTILABEL_QUESTION` (a fixed prompt; the text tower still sees a question);
- `answer` = the present findings, sorted by `CXR_FINDINGS` order and joined with `SEPARATOR`
  (e.g. "cardiomegaly|effusion"); an image without any finding is labelled "no finding" (one of the 15);
- `label` = index in `CXR_FINDINGS` of the first present finding (what Dirichlet label-shift partitions by).

The model reads these rows through a separate multi-label head (15 logits, binary cross-entropy) and is
scored by F1 (see `f3ocus.models.training`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
