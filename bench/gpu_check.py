"""The Python parts of `bench/gpu_check.sh` (the device check): LNTK vs dense references, the scale figure of
one client round on a model of LLaVA-1.5-7B's geometry, and the quickstart comparison.

    python bench/gpu_check.py lntk [--device cuda] [--families llava vilt blip blip2] [--out FILE.json]
    python bench/gpu_check.py scale [--device cuda] [--precisions bf16 fp32] [--geometry small] [--out FILE.json]
    python bench/gpu_check.py compare CPU.json CUDA_FP32.json CUDA_BF16.json [--tolerance 0.1]
    python bench/gpu_check.py run CONFIG [f3ocus run options]   # f3ocus run, printing each worker's device line

`lntk`: per tiny preset and unit mode, on `--device`, 16 samples, 13 answers: λ₁ of every unit by the ghost,
exact and matrix-free solvers against the dense references computed on the same device (grad kernel: one
backward per sample, J Jᵀ in float64; logit kernel: `torch.func.jacrev`), and their time against one local
epoch (400 samples, batch 32, all units trainable) on that device. Matrix-free runs on llava in layer mode
only (it is the slow solver: tens of jvp/vjp launches per unit).

`scale`: one client round of F3OCUS on a randomly initialised LLaVA-1.5-7B geometry (CLIP ViT-L/14 at 336 px,
24 vision blocks; a 2-layer GELU projector; LLaMA-7B, 32 language blocks of width 4096; 576 image tokens a
sample), in adapter mode (LoRA r 8 on every Linear of every unit, 57 units): LNTK scoring of every unit
(default ghost solver) on 16 samples, then one local epoch on 64 samples (batch 8, every LoRA unit + head
trainable: the most a client trains), then the upload of the trained tensors to the CPU. Seconds (CUDA
synchronised) and peak GPU memory per phase, per precision. No hub is reachable there, so the weights are
random: time and memory depend on the shapes only. A phase that runs out of memory is retried once with
half the batch and reported as such.

`compare`: the quickstart's final mean accuracy on the CPU vs CUDA fp32 vs CUDA bf16 (local engine), and
whether each CUDA run is within `--tolerance` of the CPU run.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

QUESTIONS = ("what color is the shape", "what shape is in the image", "is there a red shape",
             "does the image contain a circle", "is the shape blue")
ANSWERS = ("red", "blue", "green", "yellow", "teal", "brown", "gray", "black", "circle", "rectangle",
           "triangle", "yes", "no")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run):
    """(seconds, result) of run(), the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = run()
    sync(device)
    return time.perf_counter() - start, result


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def examples(count: int, seed: int = 0) -> tuple[list, list, list]:
    """count synthetic (image, question, answer) triples; 32×32 RGB noise images."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(count)]
    questions = [QUESTIONS[index % len(QUESTIONS)] for index in range(count)]
    answers = [ANSWERS[int(rng.integers(len(ANSWERS)))] for _ in range(count)]
    return images, questions, answers


# ------------------------------------------------------------------------------------------------ lntk
def dense_grad_grams(model, inputs, labels) -> list[torch.Tensor]:
    """Per unit, the Gram of per-sample loss gradients from one backward PER SAMPLE (nothing assumed)."""
    names = model.unit_parameter_names()
    params = dict(model.named_parameters())
    wanted = [name for unit in model.units for name in names[unit]]
    flags = {name: param.requires_grad for name, param in params.items()}
    try:
        for name, param in params.items():
            param.requires_grad_(name in wanted)
        losses = F.cross_entropy(model(**inputs), labels, ignore_index=-1, reduction="none")  # (n,)
        rows = []
        for index in range(losses.shape[0]):
            grads = torch.autograd.grad(losses[index], [params[name] for name in wanted], retain_graph=True,
                                        allow_unused=True)
            rows.append({name: (torch.zeros_like(params[name]) if value is None else value).reshape(-1).double()
                         for name, value in zip(wanted, grads)})
    finally:
        for name, param in params.items():
            param.requires_grad_(flags[name])
    grams = []
    for unit in model.units:
        jacobian = torch.stack([torch.cat([row[name] for name in names[unit]]) for row in rows]) if names[unit] \
            else torch.zeros(len(rows), 0, dtype=torch.float64, device=labels.device)  # (n, p)
        grams.append(jacobian @ jacobian.T)
    return grams


def dense_logit_eigenvalues(model, inputs) -> np.ndarray:
    """Per unit, λ₁ of the answer-logit NTK J Jᵀ with J (n·k, p) from `torch.func.jacrev`."""
    from torch.func import functional_call, jacrev

    names = model.unit_parameter_names()
    own = {name: param.detach() for name, param in model.named_parameters()}
    values = []
    for unit in model.units:
        if not names[unit]:
            values.append(0.0)
            continue
        primals = {name: own[name] for name in names[unit]}

        def outputs(tensors):
            return functional_call(model, {**own, **tensors}, args=(), kwargs=inputs).reshape(-1)

        jacobian = jacrev(outputs)(primals)
        dense = torch.cat([jacobian[name].reshape(jacobian[name].shape[0], -1) for name in names[unit]], 1).double()
        values.append(float(torch.linalg.eigvalsh(dense @ dense.T)[-1]))
    return np.array(values)


def top(grams: list[torch.Tensor]) -> np.ndarray:
    return np.array([float(torch.linalg.eigvalsh(gram.double().cpu())[-1]) if gram.numel() else 0.0
                     for gram in grams])


def relative_error(values: np.ndarray, reference: np.ndarray) -> float:
    floor = 1e-9 * max(float(np.abs(reference).max()), 1e-300)
    return float(np.max(np.abs(values - reference) / np.maximum(np.abs(reference), floor)))


def lntk_rows(family: str, unit_mode: str, device: torch.device, matfree: bool, samples: int = 16) -> list[dict]:
    from f3ocus.importance.lntk import LntkScorer
    from f3ocus.models.registry import build_vqa_model
    from f3ocus.models.training import encode_examples, train_epochs
    from f3ocus.utils.device import to_device

    model = build_vqa_model(family, "scratch", answers=ANSWERS, unit_mode=unit_mode, seed=0)
    if unit_mode == "adapter":  # as after some training: B != 0, so A has gradients too
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".lora_B." in name:
                    param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    shard = encode_examples(model, *examples(400))
    model = model.to(device).eval()
    batch, labels = to_device(shard.batch(torch.arange(samples)), device), shard.labels[:samples].to(device)
    clone = copy.deepcopy(model)
    clone.set_trainable([True] * len(clone.units))
    train_epochs(clone, shard.subset(torch.arange(32)), epochs=1, batch_size=32, lr=1e-4,
                 generator=torch.Generator().manual_seed(0))  # warm-up (kernels, allocator)
    epoch_s, _ = timed(device, lambda: train_epochs(clone, shard, epochs=1, batch_size=32, lr=1e-4,
                                                    generator=torch.Generator().manual_seed(1)))
    references = {"grad": top(dense_grad_grams(model, batch, labels)),
                  "logit": dense_logit_eigenvalues(model, batch)}
    variants = [("grad", "ghost"), ("grad", "exact"), ("logit", "exact")]
    if matfree:
        variants += [("grad", "matfree"), ("logit", "matfree")]
    rows = []
    for kernel, solver in variants:
        scorer = LntkScorer(kernel, solver)
        scorer.eigenvalues(model, batch, labels)  # warm-up
        seconds, values = timed(device, lambda: scorer.eigenvalues(model, batch, labels))
        rows.append({"family": family, "mode": unit_mode, "units": len(model.units), "kernel": kernel,
                     "solver": solver, "device": str(device), "score_s": round(seconds, 4),
                     "epoch_s": round(epoch_s, 4), "score_over_epoch": round(seconds / epoch_s, 3),
                     "max_rel_err_vs_dense": relative_error(values, references[kernel]),
                     "fallback": len(scorer.last_fallback) if solver == "ghost" else None})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_lntk(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 vs float64 refs
    rows = []
    for family in args.families:
        for unit_mode in ("layer", "adapter"):
            rows += lntk_rows(family, unit_mode, device, matfree=family == "llava" and unit_mode == "layer",
                              samples=args.samples)
    worst = max(row["max_rel_err_vs_dense"] for row in rows if row["solver"] != "matfree")
    worst_matfree = max((row["max_rel_err_vs_dense"] for row in rows if row["solver"] == "matfree"), default=0.0)
    ok = worst <= args.tolerance and worst_matfree <= args.matfree_tolerance
    print(f"lntk on {device}: worst relative error vs dense, ghost/exact {worst:.2e} (<= {args.tolerance:g}), "
          f"matrix-free {worst_matfree:.2e} (<= {args.matfree_tolerance:g}): {'PASS' if ok else 'FAIL'}")
    print(f"| family | mode | kernel | solver | score {args.samples} s | epoch 400 s | score/epoch | rel err vs dense |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['family']} | {row['mode']} | {row['kernel']} | {row['solver']} | {row['score_s']:.3f} | "
              f"{row['epoch_s']:.3f} | {row['score_over_epoch']:.2f} | {row['max_rel_err_vs_dense']:.1e} |")
    return {"rows": rows, "pass": ok}


# ----------------------------------------------------------------------------------------------- scale
# (vision hidden, vision layers, vision heads, vision MLP, image side, text hidden, text layers, text heads, text MLP)
GEOMETRIES = {"llava-1.5-7b": (1024, 24, 16, 4096, 336, 4096, 32, 32, 11008),
              "small": (64, 2, 4, 128, 56, 128, 2, 4, 256)}  # `small`: the same code path, for a CPU rehearsal
PATCH, IMAGE_TOKEN, VOCAB, PROMPT_TOKENS = 14, 32000, 32064, 23


def llava_config(geometry: str, attn_implementation: str = "sdpa"):
    """llava-hf/llava-1.5-7b-hf's architecture (CLIP ViT-L/14-336, 2-layer GELU projector, LLaMA-7B) at `geometry`."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    v_hidden, v_layers, v_heads, v_mlp, side, t_hidden, t_layers, t_heads, t_mlp = GEOMETRIES[geometry]
    vision = CLIPVisionConfig(hidden_size=v_hidden, intermediate_size=v_mlp, num_hidden_layers=v_layers,
                              num_attention_heads=v_heads, image_size=side, patch_size=PATCH, projection_dim=768,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(vocab_size=VOCAB, hidden_size=t_hidden, intermediate_size=t_mlp, num_hidden_layers=t_layers,
                       num_attention_heads=t_heads, num_key_value_heads=t_heads, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_TOKEN, vision_feature_layer=-2,
                       vision_feature_select_strategy="default", projector_hidden_act="gelu",
                       attn_implementation=attn_implementation)


def llava_model(geometry: str, device: torch.device):
    """A `VqaModel` in adapter mode (LoRA r 8, every Linear of every unit) around a random LLaVA, on `device`."""
    from transformers import LlavaForConditionalGeneration

    from f3ocus.models.families.llava import LLAVA
    from f3ocus.models.vqa_model import LoraSettings, VqaModel

    torch.manual_seed(0)
    with torch.device(device):  # weights are created (and randomly initialised) on the device itself
        backbone = LlavaForConditionalGeneration(llava_config(geometry))
    model = VqaModel(LLAVA, backbone, processor=None, answers=ANSWERS, unit_mode="adapter", lora=LoraSettings(r=8))
    return model.to(device)


def llava_shard(geometry: str, count: int, seed: int = 0):
    """count samples as the LLaVA-1.5 processor encodes them: (side/14)² image tokens inside a ~23-token prompt."""
    from f3ocus.models.training import EncodedShard

    side = GEOMETRIES[geometry][4]
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(3, IMAGE_TOKEN, (count, PROMPT_TOKENS - 1), generator=generator)
    image = torch.full((count, (side // PATCH) ** 2), IMAGE_TOKEN)
    input_ids = torch.cat([torch.ones(count, 1, dtype=torch.long), text[:, :3], image, text[:, 3:]], dim=1)
    tensors = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
               "pixel_values": torch.randn(count, 3, side, side, generator=generator)}
    return EncodedShard(tensors, torch.randint(0, len(ANSWERS), (count,), generator=generator))


def halving(device: torch.device, size: int, run, record: dict, what: str):
    """(size, seconds, peak GiB, result) of run(size), retried once at size // 2 after running out of memory."""
    for attempt in range(2):
        reset_peak(device)
        try:
            seconds, result = timed(device, lambda: run(size))
            return size, seconds, peak_gib(device), result
        except torch.OutOfMemoryError:
            record[f"{what}_out_of_memory_at"] = size
            size //= 2
            if attempt or size < 1:
                raise
    raise AssertionError("unreachable")


def scale_round(model, shard, device: torch.device, precision: str, score_batch: int, batch_size: int) -> dict:
    """One client round in `precision`: LNTK scores of every unit, one local epoch (every LoRA unit + head
    trainable), upload of the trained tensors. Seconds and peak GiB per phase."""
    from f3ocus.importance.lntk import LntkScorer
    from f3ocus.models.training import train_epochs
    from f3ocus.utils.device import autocast, to_device

    record: dict = {"precision": precision}

    def score(count: int):
        rows = torch.arange(count)
        inputs, labels = to_device(shard.batch(rows), device), shard.labels[rows].to(device)
        with autocast(device, precision):
            return LntkScorer().score(model, inputs, labels)

    count, seconds, peak, scores = halving(device, score_batch, score, record, "score")
    record.update(score_s=round(seconds, 3), score_samples=count, score_peak_gib=peak,
                  top_units=[model.units[i] for i in np.argsort(-scores)[:5]])
    model.set_trainable([True] * len(model.units))

    def train(size: int):
        return train_epochs(model, shard, epochs=1, batch_size=size, lr=1e-4,
                            generator=torch.Generator().manual_seed(0), precision=precision)

    size, seconds, peak, loss = halving(device, batch_size, train, record, "train")
    record.update(train_s=round(seconds, 3), train_samples=len(shard), train_batch=size, train_peak_gib=peak,
                  train_loss=loss)
    seconds, state = timed(device, lambda: model.trainable_state())
    record.update(upload_s=round(seconds, 3),
                  upload_mib=round(sum(t.numel() * t.element_size() for t in state.values()) / 2**20, 1))
    record["round_s"] = round(record["score_s"] + record["train_s"] + record["upload_s"], 3)
    return record


def run_scale(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    reset_peak(device)
    build_s, model = timed(device, lambda: llava_model(args.geometry, device))
    counts = model.num_unit_parameters()
    shard = llava_shard(args.geometry, args.samples)
    summary = {"geometry": args.geometry, "device": str(device),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "build_s": round(build_s, 2), "build_peak_gib": peak_gib(device),
               "parameters": sum(p.numel() for p in model.parameters()), "units": len(model.units),
               "lora_parameters": sum(counts[unit] for unit in model.units),
               "tokens_per_sample": int(shard.tensors["input_ids"].shape[1]), "rounds": []}
    print(json.dumps(summary), flush=True)
    start = model.trainable_state()  # every precision starts from the same adapters (B = 0) and head
    for precision in args.precisions:
        model.load_trainable_state(start)
        summary["rounds"].append(scale_round(model, shard, device, precision, args.score_batch, args.batch_size))
        print(json.dumps(summary["rounds"][-1]), flush=True)
    print(f"scale: {args.geometry} ({summary['parameters'] / 1e9:.2f} B parameters, {summary['units']} units, "
          f"{summary['lora_parameters'] / 1e6:.1f} M LoRA parameters, {summary['tokens_per_sample']} tokens a sample) "
          f"on {summary['gpu']}, built in {summary['build_s']} s")
    print(f"| precision | score: samples, s | score peak GiB | epoch ({args.samples} samples): batch, s | "
          "epoch peak GiB | upload s (MiB) | round s |")
    print("|---|---|---|---|---|---|---|")
    for row in summary["rounds"]:
        print(f"| {row['precision']} | {row['score_samples']}, {row['score_s']} | {_gib(row['score_peak_gib'])} | "
              f"{row['train_batch']}, {row['train_s']} | {_gib(row['train_peak_gib'])} | "
              f"{row['upload_s']} ({row['upload_mib']}) | {row['round_s']} |")
    return summary


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# --------------------------------------------------------------------------------------------- compare
def run_compare(args: argparse.Namespace) -> dict:
    paths = [Path(path) for path in args.results]
    labels = [path.stem.removeprefix("quickstart-") for path in paths]  # e.g. cpu, cuda-fp32, cuda-bf16
    results = {label: json.loads(path.read_text()) for label, path in zip(labels, paths)}
    final = {label: float(result["final"]["accuracy"]) for label, result in results.items()}
    curves = {label: [round(float(record["accuracy"]), 3) for record in result["history"]]
              for label, result in results.items()}
    seconds = {label: round(float(result["seconds"]), 1) for label, result in results.items()}
    reference, *others = labels
    ok = all(abs(final[label] - final[reference]) <= args.tolerance for label in others)
    for label in labels:
        print(f"quickstart {label:9s}: final mean accuracy {final[label]:.3f} in {seconds[label]} s; per round {curves[label]}")
    print(f"quickstart: {' and '.join(others)} within {args.tolerance} of {reference}: {'PASS' if ok else 'FAIL'}")
    return {"final_accuracy": final, "per_round": curves, "seconds": seconds, "pass": ok}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:  # `f3ocus run ...`, with the workers' device line shown (INFO of f3ocus.federated.worker)
        import logging

        from f3ocus.cli import main as f3ocus_main

        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("worker: %(message)s"))
        worker_log = logging.getLogger("f3ocus.federated.worker")
        worker_log.addHandler(handler)
        worker_log.setLevel(logging.INFO)
        return f3ocus_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lntk = commands.add_parser("lntk")
    lntk.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    lntk.add_argument("--families", nargs="+", default=["llava", "vilt", "blip", "blip2"])
    lntk.add_argument("--samples", type=int, default=16)
    lntk.add_argument("--tolerance", type=float, default=1e-4)
    lntk.add_argument("--matfree-tolerance", type=float, default=1e-2)
    scale = commands.add_parser("scale")
    scale.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    scale.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    scale.add_argument("--geometry", choices=sorted(GEOMETRIES), default="llava-1.5-7b")
    scale.add_argument("--samples", type=int, default=64)
    scale.add_argument("--score-batch", type=int, default=16)
    scale.add_argument("--batch-size", type=int, default=8)
    compare = commands.add_parser("compare")
    compare.add_argument("results", nargs=3, help="result JSONs quickstart-LABEL.json: the reference (CPU) first")
    compare.add_argument("--tolerance", type=float, default=0.1)
    for sub in (lntk, scale, compare):
        sub.add_argument("--out", default=None, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    summary = {"lntk": run_lntk, "scale": run_scale, "compare": run_compare}[args.command](args)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2, default=str))
    return 0 if summary.get("pass", True) else 1


if __name__ == "__main__":
    sys.exit(main())
