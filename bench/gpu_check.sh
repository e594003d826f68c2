#!/usr/bin/env bash
# The device check: what only a GPU can tell about f3ocus, in one command of at most ~8 minutes.
#
#   bash bench/gpu_check.sh          # on a machine with a CUDA GPU
#   bash bench/gpu_check.sh --cpu    # rehearsal without a GPU: the same steps on the CPU, smaller where noted
#
# Needs python3 with torch, transformers, peft, datasets, easy-vqa, platformdirs, pyyaml, pytest; NOT Ray,
# MLflow or pymoo (the quickstart runs on the local engine with tracking off). Missing wheels can be installed
# first: GPU_CHECK_WHEELS=DIR (pip install --no-index --target into a private dir on PYTHONPATH).
# The quickstart's foundation checkpoint is read from $F3OCUS_CACHE_DIR (pretrained there on first use).
#
# Steps (each under its own time limit; a failed step is reported and the next one runs):
#   1. env         python / torch / CUDA / GPU / transformers / peft versions
#   2. cuda-tests  pytest -m cuda: every family x unit mode trains/evaluates on the GPU as on the CPU, every
#                  scorer on the GPU as on the CPU, LNTK solvers vs their dense references, bf16 autocast
#   3. quickstart  configs/experiments/quickstart.yaml on the local engine: CPU (started first, in the
#                  background), CUDA fp32, CUDA bf16; final mean accuracy compared (|CUDA - CPU| <= 0.1)
#   4. scale       one client round (LNTK scores + one local epoch on 64 samples, LoRA units) on a randomly
#                  initialised LLaVA-1.5-7B geometry: seconds and peak GPU memory, bf16 and fp32
#   5. lntk        LNTK solvers vs dense references on the GPU, 16 samples, tiny LLaVA and BLIP-2, with timings
# Output: this log, and JSON summaries in $GPU_CHECK_OUT (default runs/gpu_check); with $GPU_CHECK_RESULTS
# set, the summaries are also copied there. GPU_CHECK_STEPS="lntk scale" runs only the steps named.
# Exit status: the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
OUT_DIR=$(mkdir -p "${GPU_CHECK_OUT:-runs/gpu_check}" && cd "${GPU_CHECK_OUT:-runs/gpu_check}" && pwd)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
export PYTHONUNBUFFERED=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
export F3OCUS_CACHE_DIR=${F3OCUS_CACHE_DIR:-$OUT_DIR/cache}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}  # the 7B round's varying shapes

if [ -n "${GPU_CHECK_WHEELS:-}" ] && compgen -G "$GPU_CHECK_WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/f3ocus-site \
        "$GPU_CHECK_WHEELS"/*.whl || { echo "gpu_check: installing the wheels of $GPU_CHECK_WHEELS failed"; exit 100; }
    export PYTHONPATH=/tmp/f3ocus-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if [ "${1:-}" = "--cpu" ]; then
    MODE=cpu
    LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-8}  # the step limits are sized for a GPU machine
    export F3OCUS_CUDA_TESTS_ON_CPU=1  # the cuda-marked tests run their code on the CPU
    GPUS=1; DEVICE=cpu  # the "device" runs ask for a GPU and fall back to the CPU, saying so
    LNTK_ARGS=(--families llava --samples 4); SCALE_ARGS=(--geometry small --samples 16 --score-batch 8 --batch-size 8)
    TEST_ARGS=(-k "not vilt and not blip and not matfree")  # llava only, no Lanczos (slow on the CPU)
    QUICKSTART_ARGS=(--set federation.rounds=2)  # a rehearsal: the same code path, 2 rounds
else
    MODE=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "none")')
    if [ "$MODE" != cuda ]; then
        echo "gpu_check: torch sees no CUDA device; run 'bash bench/gpu_check.sh --cpu' for the CPU rehearsal"
        exit 2
    fi
    GPUS=1; DEVICE=cuda
    LIMIT_SCALE=${GPU_CHECK_LIMIT_SCALE:-1}
    LNTK_ARGS=(--families llava blip2); SCALE_ARGS=(); TEST_ARGS=(); QUICKSTART_ARGS=()
fi

declare -a SUMMARY=()
FAILED=0
export PY OUT_DIR DEVICE GPUS QUICKSTART_SETTINGS="${QUICKSTART_ARGS[*]}"
STEPS=" ${GPU_CHECK_STEPS:-cuda-tests quickstart lntk scale} "  # a subset reruns only those steps
step() {  # step NAME LIMIT_S COMMAND...: run (a command or an exported function) under a time limit, record the verdict
    local name=$1 limit=$(($2 * LIMIT_SCALE))
    shift 2
    case "$STEPS" in *" $name "*) ;; *) return 0;; esac
    echo
    echo "=== $name (limit ${limit} s) === $(date -u +%H:%M:%S)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@"
    local rc=$? took=$((SECONDS - start))
    local verdict=PASS
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then verdict="FAIL (time limit)"; elif [ $rc -ne 0 ]; then verdict="FAIL (exit $rc)"; fi
    [ "$verdict" = PASS ] || FAILED=$((FAILED + 1))
    SUMMARY+=("$(printf '%-11s %-18s %4d s' "$name" "$verdict" "$took")")
}

quickstart() {  # quickstart LABEL SETTINGS...: one quickstart run (local engine, no tracking) into $OUT_DIR
    "$PY" bench/gpu_check.py run configs/experiments/quickstart.yaml --set federation.engine=local \
        --set tracking.mlflow=false --set "tracking.output_dir=$OUT_DIR/quickstart-$1" \
        --output-json "$OUT_DIR/quickstart-$1.json" $QUICKSTART_SETTINGS "${@:2}" > "$OUT_DIR/quickstart-$1.log" 2>&1
    local rc=$?
    { grep "^worker:" "$OUT_DIR/quickstart-$1.log" | head -n 1; tail -n 3 "$OUT_DIR/quickstart-$1.log"; } | sed "s/^/  [$1] /"
    return $rc
}
device_quickstarts() {  # fp32 and bf16 on the device, then the comparison with the CPU run started earlier
    quickstart "$DEVICE-fp32" --set federation.worker_resources.num_gpus=$GPUS || return 1
    quickstart "$DEVICE-bf16" --set federation.worker_resources.num_gpus=$GPUS --set federation.precision=bf16 \
        || return 1
    echo "  waiting for the CPU reference run ..."
    while [ ! -f "$OUT_DIR/quickstart-cpu.rc" ]; do sleep 1; done
    [ "$(cat "$OUT_DIR/quickstart-cpu.rc")" = 0 ] || { echo "  the CPU reference run failed"; return 1; }
    "$PY" bench/gpu_check.py compare "$OUT_DIR/quickstart-cpu.json" "$OUT_DIR/quickstart-$DEVICE-fp32.json" \
        "$OUT_DIR/quickstart-$DEVICE-bf16.json" --out "$OUT_DIR/quickstart.json"
}
export -f quickstart device_quickstarts
rm -f "$OUT_DIR"/quickstart-*.json "$OUT_DIR"/quickstart-cpu.rc "$OUT_DIR"/{cuda_tests.xml,quickstart.json,lntk.json,scale.json}

echo "=== env === mode $MODE, out $OUT_DIR, F3OCUS_CACHE_DIR $F3OCUS_CACHE_DIR, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
"$PY" - <<'EOF'
import platform, torch, transformers, peft
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"transformers {transformers.__version__}, peft {peft.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv

# The CPU reference of the quickstart runs in the background from the start (4 threads), beside the GPU steps.
CPU_QUICKSTART=
case "$STEPS" in *" quickstart "*)
    (quickstart cpu --set federation.worker_resources.num_cpus=4; echo $? > "$OUT_DIR/quickstart-cpu.rc") &
    CPU_QUICKSTART=$!;;
esac

step cuda-tests 200 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/unit/models/test_cuda_models.py \
    tests/unit/importance/test_cuda_importance.py --junitxml "$OUT_DIR/cuda_tests.xml" "${TEST_ARGS[@]}"
step quickstart 150 device_quickstarts
step scale 180 "$PY" bench/gpu_check.py scale --device "$DEVICE" "${SCALE_ARGS[@]}" --out "$OUT_DIR/scale.json"
step lntk 120 "$PY" bench/gpu_check.py lntk --device "$DEVICE" "${LNTK_ARGS[@]}" --out "$OUT_DIR/lntk.json"
[ -z "$CPU_QUICKSTART" ] || pkill -P "$CPU_QUICKSTART" 2>/dev/null  # the CPU run, if its step ran out of time

echo
echo "=== summary ($MODE) ==="
printf '%s\n' "${SUMMARY[@]}"
if [ -n "${GPU_CHECK_RESULTS:-}" ]; then
    mkdir -p "$GPU_CHECK_RESULTS"
    cp -f "$OUT_DIR"/{cuda_tests.xml,quickstart.json,lntk.json,scale.json} "$GPU_CHECK_RESULTS"/ 2>/dev/null
fi
exit $FAILED
