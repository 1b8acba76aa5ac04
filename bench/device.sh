#!/usr/bin/env bash
# On the lent GPU machine, from the repository root (see bench/README.md): the GPU tests, the GPU
# benchmark and a torch-free CLI run on CUDA. Writes logs and results-*.json to $OUT.
set -uo pipefail
export PYTHONPATH="$PWD/core/src${PYTHONPATH:+:$PYTHONPATH}" VERTICALS_HOME=/tmp/vh PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/bench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
python3 -c "import onnxruntime as o, polars, pyarrow, numpy; print('ort', o.__version__, o.get_available_providers(), 'polars', polars.__version__, 'pyarrow', pyarrow.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest tests/core/test_scoring.py -q -p no:randomly -k "cuda or lanes or parquet_scores" 2>&1 | tee "$OUT/pytest-gpu.txt" | tail -4
python3 bench/score_bench.py gpu --out /tmp/bench --rows "${ROWS:-4000000}" --batch-size "${BS:-262144}" \
  --repeat "${REPEAT:-5}" --e2e "${E2E:-1:pyarrow,4:pyarrow,8:pyarrow,4:polars,8:polars}" > "$OUT/bench-gpu.txt" 2> "$OUT/bench-gpu.log"
tail -22 "$OUT/bench-gpu.txt"; tail -3 "$OUT/bench-gpu.log"
cp /tmp/bench/results-gpu.json "$OUT/" 2>/dev/null
python3 bench/score_bench.py torchfree --device cuda --out /tmp/bench --rows "${ROWS:-4000000}" \
  --batch-size "${BS:-262144}" > "$OUT/torchfree.txt" 2>&1; tail -14 "$OUT/torchfree.txt"
