#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (README, "GPU"): the CUDA tests, then the cost sweep
# and the speed command on the GPU. Each step has its own time limit and writes into OUT as it goes, so a
# step that runs out of time or fails leaves the others' results. Usage: OUT=folder bash scripts/gpu_check.sh
# Expects a python3 that has torch with CUDA; WHEELS names a folder of wheels for what that python lacks
# (jsonargparse, wandb, dnc, ...), installed into /tmp/site first. The files are named as the report reads
# them from paper/results/gpu (reference.csv, tasks.csv, batches_copy.csv, cost.csv, cost_fit.csv).
# COST_RESUME=path/to/cost.csv continues a cost sweep that an earlier call left unfinished (the sweep
# measures only the configurations not in it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true
if [ -n "${WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
MZ="python3 -m mann_zoo.cli"
step() {   # step NAME SECONDS COMMAND...: run, log to OUT/NAME.log, note its exit status and time
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start))s"
    tail -n 25 "$OUT/$name.log"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
  python3 -c "import mann_zoo; print('mann_zoo', mann_zoo.__version__)"; git rev-parse --short HEAD 2>/dev/null; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
python3 -c "import mann_zoo.cli, jsonargparse, wandb, dnc" || exit 1

[ -n "${SKIP_TESTS:-}" ] || step tests "${TESTS_S:-90}" python3 -m pytest -o addopts="" -q -p no:cacheprovider -n 8 \
    tests/test_cuda.py tests/test_memory.py -k "cuda"
# cost per step against N and W, eager, with the PyPI peer; the dense DNCs to N = 2,048 on the GPU's memory.
# Into /tmp/cost, not OUT: the sweep's W&B run folder holds more files than come back from OUT.
mkdir -p /tmp/cost
[ -z "${COST_RESUME:-}" ] || cp "$COST_RESUME" /tmp/cost/cost.csv
step cost "${COST_S:-130}" $MZ bench cost --device cuda --reference --dnc-max-slots 2048 --repeats 5 --out /tmp/cost
cp /tmp/cost/cost.csv /tmp/cost/cost_fit.csv "$OUT"/ 2>/dev/null
# the reference step (batch 32, copy length 20, LSTM 100, memory 128 x 20), eager and compiled, with the peer
step reference "${REFERENCE_S:-220}" $MZ speed --models ntm dnc lstm --compile --reference --repeats 5 \
    --device cuda --out "$OUT/reference.csv"
# sequences per second at each task's configuration (its own batch), eager (the sparse DNCs, 3 times the dense
# step on a GPU, left out to fit the time)
step tasks "${TASKS_S:-90}" $MZ speed --task configs/task/copy.yaml configs/task/repeat_copy.yaml \
    configs/task/ngrams.yaml --model configs/model/ntm.yaml configs/model/dnc.yaml configs/model/lstm.yaml \
    --repeats 3 --device cuda --out "$OUT/tasks.csv"
# copy at batch 32 to 2,048: what a GPU gains from batching, eager
step batches "${BATCHES_S:-60}" $MZ speed --task configs/task/copy.yaml --model configs/model/ntm.yaml \
    configs/model/dnc.yaml configs/model/lstm.yaml --batches 32 128 512 2048 --repeats 3 --device cuda \
    --out "$OUT/batches_copy.csv"
ls -la "$OUT"
