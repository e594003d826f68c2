"""The Ultra-MedVQA question phrasings: 2-3 templates per question type, and which types apply to a dataset.

docs/METHOD.md §5 (T3) names the question types (modality, anatomy, diagnosis, grading, tissue, other
attributes) but the paper does not publish its templates, so these phrasings are ours. They live apart
from the builder so that `f3ocus.data.vocabulary` can enumerate every question the builder can emit
without building anything. Multi-label datasets (chestmnist) ask yes/no questions with a `{finding}`
slot; every other template is a fixed string.
"""

from __future__ import annotations

from f3ocus.data.medmnist_meta import MedMnistInfo

# DEVIATION: the paper's Ultra-MedVQA templates are unpublished; these phrasings are ours.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "modality": ("what imaging modality is this?", "which modality was used to acquire this image?",
                 "how was this image acquired?"),
    "anatomy": ("which part of the body is shown?", "what anatomy does this image show?",
                "where in the body was this image taken?"),
    "diagnosis": ("what is the diagnosis?", "what finding does this image show?",
                  "what abnormality is seen in this image?"),
    "grading": ("what is the diabetic retinopathy grade?", "how severe is the retinopathy in this image?",
                "what grade is this fundus image?"),
    "tissue": ("what type of tissue is this?", "which tissue is shown?", "what kind of tissue does this image show?"),
}
FINDING_TEMPLATES: tuple[str, ...] = ("is there {finding} in this image?", "does this image show {finding}?",
                                      "is {finding} present?")
ATTRIBUTE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "blood": ("what type of blood cell is this?", "which cell type is shown?",
              "what kind of blood cell is in the image?"),
    "abdomen": ("which organ is shown?", "what organ is in this image?", "which organ does this slice show?"),
}
YES_NO: tuple[str, str] = ("no", "yes")


def question_types(info: MedMnistInfo) -> tuple[str, ...]:
    """Return the question types that apply to a dataset: modality, anatomy and its label question."""
    return ("modality", "anatomy", info.label_question)


def templates_for(info: MedMnistInfo, question_type: str) -> tuple[str, ...]:
    """Return the phrasings of `question_type` for this dataset.

    Args:
        info: the dataset's table entry.
        question_type: one of `question_types(info)`.

    Returns:
        2-3 templates; multi-label diagnosis templates contain a `{finding}` slot.

    Raises:
        KeyError: the type does not apply to this dataset.
    """
    if question_type not in question_types(info):
        raise KeyError(f"question type {question_type!r} does not apply to {info.flag}")
    if question_type == "diagnosis" and info.task == "multi-label":
        return FINDING_TEMPLATES
    if question_type == "attribute":
        return ATTRIBUTE_TEMPLATES[info.anatomy]
    return TEMPLATES[question_type]


def all_questions(info: MedMnistInfo) -> list[str]:
    """Return every question text the builder can ask about this dataset (slots filled)."""
    questions: list[str] = []
    for question_type in question_types(info):
        for template in templates_for(info, question_type):
            if "{finding}" in template:
                questions.extend(template.format(finding=finding) for finding in info.answers)
            else:
                questions.append(template)
    return questions


def all_answers(info: MedMnistInfo) -> list[str]:
    """Return every answer the builder can give for this dataset."""
    label_answers = list(YES_NO) if info.task == "multi-label" else list(info.answers)
    return [info.modality, info.anatomy, *label_answers]
