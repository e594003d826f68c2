"""How stable are LNTK unit ranks under the draw of the scoring batch? (docs/STUDY.md, "LNTK batch")

    .venv/bin/python bench/lntk_rank_stability.py [--sizes 8,16,32] [--draws 2] [--out FILE.json]

For each study setting (task x deep preset, foundation checkpoint, the study's data and selectable units) and each
client: LNTK scores (`selection.scorer: lntk`, the default one-pass ghost kernel) on two disjoint random draws of
n training rows; Spearman rank correlation between the two score vectors; reported as the mean (and min) over
clients, per batch size n. The study fixes `selection.score_batch_size` from this table, before any result.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,16,32")
    parser.add_argument("--out")
    args = parser.parse_args()
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}.items():
        os.environ.setdefault(key, value)
    import torch
    from scipy.stats import spearmanr

    from f3ocus.benchmarks.study import SETTINGS, study_cells
    from f3ocus.experiment import build_data, _ensure_model
    from f3ocus.importance.registry import build_scorer
    from f3ocus.models.registry import build_vqa_model
    from f3ocus.models.training import encode_examples

    torch.set_num_threads(1)
    sizes = [int(size) for size in args.sizes.split(",")]
    tracking = {"experiment": "rank-stability", "output_dir": "/tmp/f3ocus-rank-stability", "mlflow": False}
    report = []
    for setting in SETTINGS:
        cell = next(c for c in study_cells(seeds=1, methods=["lntk_only"], settings=[setting], tracking=tracking))
        cfg = cell.config
        _ensure_model(cfg, lambda line: None)
        store = build_data(cfg)
        model = build_vqa_model(cfg.model.family, cfg.model.checkpoint, answers=store.answers, seed=cfg.seed,
                                selectable=cfg.model.selectable, findings=store.findings)
        scorer = build_scorer("lntk")
        for size in sizes:
            rhos, seconds = [], []
            for index, client in enumerate(store.clients):
                rows = store.shard(client, "train")
                shard = encode_examples(model, rows["image"], rows["question"], rows["answer"],
                                        question_types=rows["question_type"])
                order = torch.randperm(len(shard.labels), generator=torch.Generator().manual_seed(index))
                if len(order) < 2 * size:
                    continue
                draws = []
                for part in (order[:size], order[size:2 * size]):
                    start = time.perf_counter()
                    draws.append(scorer.score(model, {k: v[part] for k, v in shard.tensors.items()},
                                              shard.labels[part]))
                    seconds.append(time.perf_counter() - start)
                rhos.append(float(spearmanr(draws[0], draws[1]).statistic))
            line = {"task": setting.task, "model": setting.model, "units": len(model.units), "batch": size,
                    "spearman_mean": float(np.mean(rhos)), "spearman_min": float(np.min(rhos)),
                    "clients": len(rhos), "seconds_per_score": float(np.mean(seconds))}
            report.append(line)
            print(f"{setting.task} {setting.model:8s} L={line['units']:2d} n={size:3d}: Spearman mean "
                  f"{line['spearman_mean']:.3f} min {line['spearman_min']:.3f} over {len(rhos)} clients, "
                  f"{line['seconds_per_score']:.2f} s per score (1 thread)", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
