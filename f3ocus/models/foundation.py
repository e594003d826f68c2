"""The offline "foundation" checkpoints: tiny presets pretrained centrally on easy-vqa and cached.

No VLM checkpoint can be downloaded here, so the default `checkpoint: foundation` is the tiny preset
of a family after a short supervised pretraining on easy-vqa, with a share of the backgrounds repainted
and asked about (`f3ocus.data.backgrounds`: global hue, brightness and grain, which easy-vqa alone never
asks about), training all backbone parameters + a closed-set head on those answers. This module owns where such a checkpoint lives
(`foundation_dir`), how it is made (`pretrain`) and how it is made exactly once (`ensure_foundation`:
file lock + tmp dir + rename, `foundation.json` written last as the completeness marker). The result
is an ordinary `save_pretrained` directory, loaded through the same `from_pretrained` path as a hub
checkpoint.

Two pretraining corpora, one directory each: "general" (checkpoint string `foundation`) is the above;
"medical" (`foundation-med`) adds Ultra-MedVQA questions (modality, anatomy and label questions) on
synthetic MedMNIST-format images of `MEDICAL_FLAGS` only, generated from a held-out seed. Those are the
MedMNIST modalities that no client of the T2 modality setting holds, so a T2 client's images, label set
and label answers stay unseen; what transfers is reading a medical-style image (marks at grid cells,
intensity, spots) and the question templates, as a real medical VLM transfers what it learnt on other
modalities.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
import torch
from filelock import FileLock
from torch.nn import functional

from f3ocus.models._rng import isolated_rng
from f3ocus.models.catalog import DEFAULT_IMAGE_SIZE, SCRATCH, family_name
from f3ocus.models.units import is_unused_path

if TYPE_CHECKING:
    from f3ocus.models.training import EncodedShard
    from f3ocus.models.vqa_model import VqaModel

# Finding a cached checkpoint (`foundation_dir`, `ensure_foundation` on a hit) needs neither transformers
# nor the data builders: the driver and every client actor do it at start-up. Only `pretrain` imports them.

# DEVIATION: the paper fine-tunes public pretrained VLMs; offline, the default "foundation" is a tiny
# preset pretrained here on easy-vqa (a real checkpoint is still one `model.checkpoint` away).
MARKER = "foundation.json"
VERSION = "v2"  # v2: background scenes added to the pretraining mix
CORPORA: tuple[str, ...] = ("general", "medical")
# chest X-ray (multi-label findings, asked as yes/no) and kidney-cortex tissue: no T2 client's modality. The
# organ C/S views are left out too: they share the CT client's label set, which would leak that client's task.
MEDICAL_FLAGS: tuple[str, ...] = ("chestmnist", "tissuemnist")
MEDICAL_SEED = 7919  # generator seed of the medical pretraining files; runs draw their data with seeds 0, 1, ...
MEDICAL_IMAGES_PER_FLAG = 2500  # pooled and re-split 80/20 by the Ultra-MedVQA builder
ENV_CACHE_DIR = "F3OCUS_CACHE_DIR"
# Measured (2-core box, other jobs running, 1 torch thread): 400 steps = 83-91 s wall, 53-58 s CPU per
# family including encoding and evaluation; easy-vqa test accuracy 0.67 vs majority ("no") 0.37.
DEFAULT_STEPS = {"llava": 400, "vilt": 400, "llava24": 1500, "vilt12": 1500}
FALLBACK_STEPS = 400
BATCH_SIZE = 32
LR = 2e-3
# The deep narrow presets stall at the prior answer after 400 steps at 2e-3 (vilt12: 0.38 vs majority 0.34;
# llava24: 0.40; at 2e-3 x 1500: 0.43): they get 1500 steps at 1e-3 (vilt12 0.68, llava24 0.59 vs 0.34;
# 137 s and 327 s on one loaded core).
DEFAULT_LR = {"vilt12": 1e-3, "llava24": 1e-3}
WARMUP_STEPS = 20
TRAIN_LIMIT = 8000
EVAL_LIMIT = 2000
Log = Callable[[str], Any]


def foundation_dir(family: str, cache_dir: str | Path | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                   corpus: str = "general") -> Path:
    """Directory of a family's foundation checkpoint.

    Args:
        family: "llava", "tiny-llava", ...
        cache_dir: cache root; default `$F3OCUS_CACHE_DIR`, else `platformdirs.user_cache_dir("f3ocus")`.
        image_size: input side of the preset; 32 (default) keeps the plain name.
        corpus: "general" or "medical" (see the module docstring).

    Returns:
        `<root>/foundation/tiny-<family>-v2` (`tiny-<family>-<size>px-v2` for other image sizes; `-med` before
        the version for the medical corpus).
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown pretraining corpus {corpus!r}; expected one of {CORPORA}")
    name = family_name(family)
    root = Path(cache_dir or os.environ.get(ENV_CACHE_DIR) or platformdirs.user_cache_dir("f3ocus"))
    size = "" if image_size == DEFAULT_IMAGE_SIZE else f"-{image_size}px"
    med = "-med" if corpus == "medical" else ""
    return root / "foundation" / f"tiny-{name}{size}{med}-{VERSION}"


def is_complete(directory: Path) -> bool:
    """Whether `directory` holds a finished checkpoint (its `foundation.json` is written last)."""
    return (directory / MARKER).is_file()


def ensure_foundation(family: str, cache_dir: str | Path | None = None, *, log: Log = print,
                      force: bool = False, image_size: int = DEFAULT_IMAGE_SIZE,
                      steps: int | None = None, corpus: str = "general") -> Path:
    """Return the foundation checkpoint directory, pretraining it first if it is missing.

    Concurrent callers (processes or threads) serialise on a file lock next to the directory; whoever
    gets the lock second finds the checkpoint complete and returns it without pretraining.

    Args:
        family: "llava", "tiny-llava", ...
        cache_dir: cache root (see `foundation_dir`).
        log: progress sink (one line per message).
        force: pretrain again even if a complete checkpoint exists.
        image_size: input side of the preset.
        steps: optimiser steps (default: `DEFAULT_STEPS[family]`).
        corpus: "general" or "medical" pretraining mix (module docstring).

    Returns:
        The directory, holding `save_pretrained` files of model and processor plus `foundation.json`.
    """
    target = foundation_dir(family, cache_dir, image_size, corpus)
    if is_complete(target) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_complete(target) and not force:
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a crashed writer
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        name = family_name(family)
        log(f"pretraining foundation checkpoint tiny-{name} ({corpus} corpus) into {target} (one-off)")
        info = pretrain(name, tmp, steps=steps or DEFAULT_STEPS.get(name, FALLBACK_STEPS),
                        batch_size=BATCH_SIZE, lr=DEFAULT_LR.get(name, LR), seed=0, log=log, image_size=image_size,
                        corpus=corpus)
        (tmp / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    log(f"foundation tiny-{name}: accuracy {info['test_accuracy']:.3f} vs majority "
        f"{info['majority_accuracy']:.3f} after {info['steps']} steps, {info['seconds']:.0f} s")
    return target


def pretrain(family: str, out_dir: str | Path, *, steps: int, batch_size: int = BATCH_SIZE, lr: float = LR,
             seed: int = 0, log: Log = print, image_size: int = DEFAULT_IMAGE_SIZE,
             train_limit: int = TRAIN_LIMIT, eval_limit: int = EVAL_LIMIT, corpus: str = "general") -> dict[str, Any]:
    """Pretrain the tiny preset of `family` on easy-vqa (all backbone parameters except unused modules,
    plus an easy-vqa answer head that is not saved) and `save_pretrained` it into `out_dir`.

    Args:
        family: family name.
        out_dir: output directory (created; `foundation.json` is NOT written here, see `ensure_foundation`).
        steps: optimiser steps.
        batch_size: examples per step.
        lr: peak AdamW learning rate (linear warm-up, cosine decay).
        seed: seeds weights, data subset and batch order.
        log: progress sink.
        image_size: input side of the preset.
        train_limit: easy-vqa train questions used (seeded subset).
        eval_limit: easy-vqa test questions evaluated (seeded subset).
        corpus: "general" (easy-vqa with background scenes) or "medical" (plus the Ultra-MedVQA questions of
            `MEDICAL_FLAGS`, whose test questions are evaluated too).

    Returns:
        Metadata for `foundation.json` (steps, seconds, test / majority accuracy, versions, ...).
    """
    import transformers

    from f3ocus.models.registry import build_vqa_model
    from f3ocus.models.training import evaluate

    start = time.perf_counter()
    if corpus not in CORPORA:
        raise ValueError(f"unknown pretraining corpus {corpus!r}; expected one of {CORPORA}")
    answers = pretraining_answers(corpus)
    model = build_vqa_model(family, SCRATCH, answers=answers, seed=seed, image_size=image_size)
    _train_everything(model)
    train = _encode_split(model, "train", train_limit, seed, corpus)
    log(f"  {family}: {len(train)} train questions encoded in {time.perf_counter() - start:.1f} s")
    loss = _run_steps(model, train, steps=steps, batch_size=batch_size, lr=lr, seed=seed, log=log)
    test = _encode_split(model, "test", eval_limit, seed, corpus)
    result = evaluate(model, test)
    majority_answer, majority = _majority(train, test)
    medical = {}
    if corpus == "medical":
        medical_test = _encode_medical(model, "test")
        medical = {"medical_flags": list(MEDICAL_FLAGS), "medical_test_accuracy": evaluate(model, medical_test).accuracy,
                   "medical_majority_accuracy": _majority(train, medical_test)[1], "n_medical_test": len(medical_test)}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.backbone.save_pretrained(out_dir)
    model.processor.save_pretrained(out_dir)
    return {"family": family, "steps": steps, "seconds": round(time.perf_counter() - start, 2),
            "test_accuracy": result.accuracy, "test_loss": result.loss, "n_test": result.n,
            "majority_answer": answers[majority_answer], "majority_accuracy": majority,
            "final_train_loss": loss, "n_train": len(train), "seed": seed, "lr": lr, "batch_size": batch_size,
            "image_size": image_size, "torch_threads": torch.get_num_threads(), "corpus": corpus, **medical,
            "transformers_version": transformers.__version__, "torch_version": torch.__version__}


def _train_everything(model: VqaModel) -> None:
    """requires_grad for every parameter except those of the family's unused modules."""
    for name, param in model.backbone.named_parameters():
        param.requires_grad_(not is_unused_path(name.rsplit(".", 1)[0], model.spec))
    model.head.requires_grad_(True)


def pretraining_answers(corpus: str = "general") -> list[str]:
    """The pretraining head's answers: easy-vqa's 13 plus the background questions' answers (plus every
    answer of `MEDICAL_FLAGS` for the medical corpus), sorted."""
    from f3ocus.data.backgrounds import background_answers
    from f3ocus.data.easy_vqa import easy_vqa_answers
    from f3ocus.data.medmnist_meta import medmnist_info
    from f3ocus.data.question_templates import all_answers

    medical = [answer for flag in MEDICAL_FLAGS for answer in all_answers(medmnist_info(flag))]
    return sorted({*easy_vqa_answers(), *background_answers(), *(medical if corpus == "medical" else ())})


def _encode_split(model: VqaModel, split: str, limit: int, seed: int, corpus: str = "general") -> EncodedShard:
    """Encode a seeded subset of an easy-vqa split, with background scenes mixed in (see `backgrounds`),
    and for the medical corpus the split's medical questions appended (see `_medical_rows`)."""
    from f3ocus.data.backgrounds import add_background_scenes
    from f3ocus.data.easy_vqa import load_easy_vqa
    from f3ocus.models.training import encode_examples

    rows = load_easy_vqa(split=split, limit=limit, seed=seed)
    images, questions, answers = add_background_scenes(list(rows["image"]), list(rows["question"]),
                                                       list(rows["answer"]), seed=seed + (split == "test"))
    if corpus == "medical":
        medical = _medical_rows(split)
        images, questions, answers = (images + list(medical["image"]), questions + list(medical["question"]),
                                      answers + list(medical["answer"]))
    return encode_examples(model, images, questions, answers)


def _encode_medical(model: VqaModel, split: str) -> EncodedShard:
    from f3ocus.models.training import encode_examples

    rows = _medical_rows(split)
    return encode_examples(model, list(rows["image"]), list(rows["question"]), list(rows["answer"]))


def _medical_rows(split: str) -> Any:
    """The medical corpus' rows of `split` ("train" / "test"): Ultra-MedVQA questions on synthetic MedMNIST
    files of `MEDICAL_FLAGS`, generated at 28 px from `MEDICAL_SEED` into a temporary folder."""
    import tempfile

    from f3ocus.data.medmnist_synth import generate_medmnist_npz
    from f3ocus.data.ultra_medvqa import build_ultra_medvqa

    with tempfile.TemporaryDirectory(prefix="f3ocus-medpretrain-") as folder:
        generate_medmnist_npz(folder, MEDICAL_FLAGS, size=28, n_train=MEDICAL_IMAGES_PER_FLAG, n_val=0, n_test=0,
                              seed=MEDICAL_SEED)
        rows = build_ultra_medvqa(folder, MEDICAL_FLAGS, seed=MEDICAL_SEED)
        rows = rows.filter(lambda row: row["split"] == split)
        return {column: list(rows[column]) for column in ("image", "question", "answer")}


def _run_steps(model: VqaModel, shard: EncodedShard, *, steps: int, batch_size: int, lr: float,
               seed: int, log: Log) -> float:
    """`steps` AdamW steps over reshuffled epochs of `shard`; returns the mean loss of the last 20."""
    generator = torch.Generator().manual_seed(seed)
    params = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, steps))
    order = torch.empty(0, dtype=torch.long)
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    with isolated_rng(seed):  # dropout, where a preset has any, draws from the global RNG
        for step in range(steps):
            if len(order) < batch_size:
                order = torch.randperm(len(shard), generator=generator)
            rows, order = order[:batch_size], order[batch_size:]
            loss = functional.cross_entropy(model(**shard.batch(rows)), shard.labels[rows], ignore_index=-1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 50 == 0:
                log(f"  step {step + 1}/{steps} loss {sum(losses[-50:]) / len(losses[-50:]):.3f} "
                    f"({time.perf_counter() - start:.0f} s)")
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return sum(losses[-20:]) / max(len(losses[-20:]), 1)


def _lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over `WARMUP_STEPS`, then cosine decay to 0 at `steps`."""
    warmup = min(WARMUP_STEPS, max(steps // 10, 1))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def _majority(train: EncodedShard, test: EncodedShard) -> tuple[int, float]:
    """(most frequent train answer index, its accuracy on the test shard)."""
    answer = Counter(train.labels.tolist()).most_common(1)[0][0]
    return answer, float((test.labels == answer).float().mean())
