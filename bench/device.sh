#!/usr/bin/env bash
# On the lent GPU machine, from the repository root (see bench/README.md): one prepared run of every GPU
# check, a few minutes on an H100 (each step under `timeout`, so one stuck step cannot eat the budget):
#   1. the GPU tests (CUDA vs CPU parity of whole runs, lanes returning each batch its own outputs)
#   2. `score_bench.py gpu`: host arrays → scores (the CUDA runner's IOBinding lanes over pinned,
#      double-buffered host inputs; outputs bound once per batch shape) against the pinned host→device
#      copy limit, and Parquet → Parquet against the read+write floor of the same file, interleaved
#   3. a torch-free `verticals score --device cuda` in a fresh process (which provider really ran)
# Writes logs and results-*.json to $OUT. Knobs: ROWS, BS, REPEAT, E2E (readers:parquet-reader,...).
set -uo pipefail
export PYTHONPATH="$PWD/core/src${PYTHONPATH:+:$PYTHONPATH}" VERTICALS_HOME=/tmp/vh PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/bench
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
grep -o -m1 'avx512_vnni\|avx_vnni' /proc/cpuinfo | head -1 | tee -a "$OUT/gpu.txt"
$PY -c "import onnxruntime as o, polars, pyarrow, numpy; print('ort', o.__version__, o.get_available_providers(), 'polars', polars.__version__, 'pyarrow', pyarrow.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
timeout 150 $PY -m pytest tests/core/test_scoring.py tests/core/test_scoring_stream.py -q -p no:randomly \
  -k "cuda or lanes or parquet_scores or stream" 2>&1 | tee "$OUT/pytest-gpu.txt" | tail -4
timeout 300 $PY bench/score_bench.py gpu --out /tmp/bench --rows "${ROWS:-4000000}" --batch-size "${BS:-262144}" \
  --repeat "${REPEAT:-3}" --e2e "${E2E:-4:pyarrow,8:pyarrow,8:polars}" > "$OUT/bench-gpu.txt" 2> "$OUT/bench-gpu.log"
tail -22 "$OUT/bench-gpu.txt"; tail -3 "$OUT/bench-gpu.log"
cp /tmp/bench/results-gpu.json "$OUT/" 2>/dev/null
timeout 90 $PY bench/score_bench.py torchfree --device cuda --out /tmp/bench --rows "${ROWS:-4000000}" \
  --batch-size "${BS:-262144}" > "$OUT/torchfree.txt" 2>&1; tail -14 "$OUT/torchfree.txt"
