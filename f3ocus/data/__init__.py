"""Data package: VQA sources mapped into one row layout, federated partitions and the on-disk store.

Reading order: `schema` (the row layout, `DataError` and the `BadRows` skip report) -> the builders (`easy_vqa`, `ultra_medvqa`
on `medmnist_meta` / `medmnist_synth` / `question_templates`, `hub`, `vqamed`, `domains`, `cxr` / `cxr_synth`,
`sources` for several at once; `builders`, one per task of the registry `f3ocus.tasks`, calls them) ->
`partition` -> `answers` -> `store` -> `prepare` (the one entry point the platform calls). `vocabulary` lists
every word the built-in builders can produce, for the tiny VLMs' tokenizer.
"""

from f3ocus.data.answers import answer_vocabulary, closed_set_accuracy, majority_answer, normalize_answer
from f3ocus.data.cxr import load_cxr_multilabel
from f3ocus.data.cxr_synth import generate_cxr_dataset
from f3ocus.data.domains import DOMAINS, build_easy_vqa_domains
from f3ocus.data.easy_vqa import easy_vqa_answers, load_easy_vqa
from f3ocus.data.hub import HUB_IDS, load_hub_vqa
from f3ocus.data.medmnist_meta import FLAGS, INFO, MedMnistInfo, medmnist_info
from f3ocus.data.medmnist_synth import generate_medmnist_npz
from f3ocus.data.partition import client_names, partition_dirichlet, partition_iid, partition_natural
from f3ocus.data.prepare import config_fingerprint, prepare_federated_data
from f3ocus.data.schema import FEATURES, BadRows, DataError, column_values, make_vqa_dataset
from f3ocus.data.sources import build_multi_source
from f3ocus.data.store import FederatedStore
from f3ocus.data.ultra_medvqa import build_ultra_medvqa, find_npz_files, load_medmnist_npz
from f3ocus.data.vocabulary import builtin_words, split_words
from f3ocus.data.vqamed import load_vqamed

__all__ = [
    "DOMAINS", "FEATURES", "FLAGS", "HUB_IDS", "INFO", "BadRows", "DataError", "FederatedStore", "MedMnistInfo",
    "answer_vocabulary", "build_easy_vqa_domains", "build_multi_source", "build_ultra_medvqa", "builtin_words", "client_names", "closed_set_accuracy",
    "column_values", "config_fingerprint", "easy_vqa_answers", "find_npz_files", "generate_cxr_dataset",
    "generate_medmnist_npz", "load_cxr_multilabel", "load_easy_vqa", "load_hub_vqa", "load_medmnist_npz", "load_vqamed", "majority_answer", "make_vqa_dataset",
    "medmnist_info", "normalize_answer", "partition_dirichlet", "partition_iid", "partition_natural",
    "prepare_federated_data", "split_words",
]
