"""Hand-written facts about the twelve 2D MedMNIST-v2 datasets that the Ultra-MedVQA builder needs.

Source: Yang et al., "MedMNIST v2 — A large-scale lightweight benchmark for 2D and 3D biomedical image
classification", Scientific Data 10:41 (2023), and the `INFO` dict in `medmnist/info.py` (task, label
names verbatim, n_channels). The `medmnist` package itself is not imported: it pulls torchvision and an
unpinned torch and downloads at run time. Modality and anatomy strings are ours (lower-case, short, one
per MedMNIST "Data Modality" entry); `answers` are our short answer phrasings of the label names, in
label-index order, used as VQA answers; `label_question` says which Ultra-MedVQA question type asks
for the label (docs/METHOD.md §5: diagnosis, grading, tissue, other attributes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskType = Literal["multi-class", "multi-label", "binary", "ordinal"]
LabelQuestion = Literal["diagnosis", "grading", "tissue", "attribute"]

_ORGANS: tuple[str, ...] = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
                            "liver", "lung-left", "lung-right", "pancreas", "spleen")
_ORGAN_ANSWERS: tuple[str, ...] = ("bladder", "left femur", "right femur", "heart", "left kidney", "right kidney",
                                   "liver", "left lung", "right lung", "pancreas", "spleen")


@dataclass(frozen=True)
class MedMnistInfo:
    """One MedMNIST-v2 2D dataset.

    Attributes:
        flag: file stem, e.g. "pathmnist".
        task: multi-class / multi-label / binary / ordinal.
        labels: C label names exactly as MedMNIST's INFO spells them, index = label value.
        answers: C short lower-case answer phrasings of `labels`, same order.
        n_channels: 1 (gray, images (N, H, W)) or 3 (RGB, images (N, H, W, 3)).
        modality: imaging modality, e.g. "x-ray".
        anatomy: body part or specimen, e.g. "chest".
        label_question: which question type asks for the label.
    """

    flag: str
    task: TaskType
    labels: tuple[str, ...]
    answers: tuple[str, ...]
    n_channels: int
    modality: str
    anatomy: str
    label_question: LabelQuestion

    @property
    def num_classes(self) -> int:
        """C, the number of labels (columns of a multi-label label matrix)."""
        return len(self.labels)


def _organ(flag: str) -> MedMnistInfo:
    return MedMnistInfo(flag, "multi-class", _ORGANS, _ORGAN_ANSWERS, 1, "ct", "abdomen", "attribute")


_CHEST = ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
          "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia")
_TISSUE = ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
           "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
           "Thick Ascending Limb")
_DERMA = ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
          "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions")
_BLOOD = ("basophil", "eosinophil", "erythroblast",
          "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
          "neutrophil", "platelet")
_PATH = ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
         "cancer-associated stroma", "colorectal adenocarcinoma epithelium")

INFO: dict[str, MedMnistInfo] = {info.flag: info for info in (
    MedMnistInfo("pathmnist", "multi-class", _PATH, _PATH, 3, "pathology", "colon", "tissue"),
    MedMnistInfo("chestmnist", "multi-label", _CHEST, (*_CHEST[:12], "pleural thickening", "hernia"),
                 1, "x-ray", "chest", "diagnosis"),
    MedMnistInfo("dermamnist", "multi-class", _DERMA,
                 ("actinic keratosis", "basal cell carcinoma", "benign keratosis", "dermatofibroma", "melanoma",
                  "melanocytic nevus", "vascular lesion"), 3, "dermatoscopy", "skin", "diagnosis"),
    MedMnistInfo("octmnist", "multi-class",
                 ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                 ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                 1, "oct", "retina", "diagnosis"),
    MedMnistInfo("pneumoniamnist", "binary", ("normal", "pneumonia"), ("normal", "pneumonia"),
                 1, "x-ray", "chest", "diagnosis"),
    MedMnistInfo("retinamnist", "ordinal", ("0", "1", "2", "3", "4"),
                 ("grade 0", "grade 1", "grade 2", "grade 3", "grade 4"), 3, "fundus", "retina", "grading"),
    MedMnistInfo("breastmnist", "binary", ("malignant", "normal, benign"), ("malignant", "benign or normal"),
                 1, "ultrasound", "breast", "diagnosis"),
    MedMnistInfo("bloodmnist", "multi-class", _BLOOD,
                 ("basophil", "eosinophil", "erythroblast", "immature granulocyte", "lymphocyte", "monocyte",
                  "neutrophil", "platelet"), 3, "microscopy", "blood", "attribute"),
    MedMnistInfo("tissuemnist", "multi-class", _TISSUE,
                 ("collecting duct", "distal convoluted tubule", "glomerular endothelial cell",
                  "interstitial endothelial cell", "leukocyte", "podocyte", "proximal tubule",
                  "thick ascending limb"), 1, "microscopy", "kidney", "tissue"),
    _organ("organamnist"),
    _organ("organcmnist"),
    _organ("organsmnist"),
)}

FLAGS: tuple[str, ...] = tuple(INFO)
# DEVIATION: the paper reports 9 modality clients for Ultra-MedVQA; the twelve 2D datasets carry 8 distinct
# modalities here (x-ray: chest+pneumonia, ct: organ a/c/s, microscopy: blood+tissue), so a natural
# partition by modality gives 8 clients (by="source" gives 12).


def medmnist_info(flag: str) -> MedMnistInfo:
    """Return the table entry for `flag`.

    Raises:
        KeyError: unknown flag; the message lists the known ones.
    """
    try:
        return INFO[flag]
    except KeyError:
        raise KeyError(f"unknown MedMNIST flag {flag!r}; known: {', '.join(FLAGS)}") from None
