"""`.venv/bin/python bench/paper_analysis.py runs/bench/paper-full`: paired method comparisons and seed noise of a
`f3ocus bench paper` grid (docs/RESULTS.md); fills a cell summary's missing majority_score from its result.json."""
import json, glob, sys, os, math
import numpy as np
bench = sys.argv[1]
cells = {}
for path in glob.glob(f"{bench}/cells/*.json"):
    cell = json.load(open(path))
    if cell.get("status") == "ok" and "majority_score" not in cell:
        runs = sorted(glob.glob(f"{bench}/runs/{cell['cell']}-*/result.json"))
        if runs:
            result = json.load(open(runs[-1]))
            base = result["majority_baseline"]
            cell["majority_score"] = base.get("score", base.get("accuracy"))
            tmp = path + ".tmp"; json.dump(cell, open(tmp, "w"), indent=2); os.replace(tmp, path)
    cells[cell["cell"]] = cell
ok = [c for c in cells.values() if c.get("status") == "ok"]
print(len(ok), "ok cells of", len(cells))
def paired(a, b, models):
    diffs, wins = [], 0
    for c in ok:
        if c["method"] != a or c["model"] not in models: continue
        other = cells.get(f"{c['task']}.{c['model']}.{b}.s{c['seed']}")
        if other and other.get("status") == "ok":
            d = 100 * (c["score"] - other["score"]); diffs.append(d); wins += d > 0
    d = np.array(diffs)
    return f"{a} - {b}: mean {d.mean():+.2f} points, sd {d.std(ddof=1):.2f}, se {d.std(ddof=1)/math.sqrt(len(d)):.2f}, {wins} wins / {int((d<0).sum())} losses / {int((d==0).sum())} ties of {len(d)} paired (task, model, seed)"
for models in (("blip",), ("vilt",), ("blip", "vilt")):
    print(models)
    for a, b in (("f3ocus", "lntk_only"), ("lntk_only", "random"), ("f3ocus", "random"), ("lntk_only", "last_k"), ("f3ocus", "fd")):
        try: print("  ", paired(a, b, models))
        except Exception as e: print("  ", a, b, e)
# seed std vs method spread per column
for model in ("blip", "vilt"):
    for task in ("t1","t2","t3","t4","t5","t6"):
        means = {}; sds = []
        for m in {c["method"] for c in ok}:
            vals = [100*c["score"] for c in ok if c["task"]==task and c["model"]==model and c["method"]==m]
            if len(vals) >= 2: means[m] = np.mean(vals); sds.append(np.std(vals, ddof=1))
        if means:
            print(model, task, f"method means span {min(means.values()):.1f}-{max(means.values()):.1f}, median seed sd {np.median(sds):.1f}")
