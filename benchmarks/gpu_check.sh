#!/usr/bin/env bash
# One prepared GPU check: on a machine with a CUDA GPU, runs the GPU tests
# (`pytest -m gpu`) and the GPU benchmark rows (`benchmarks/run.py
# --gpu-only`), and writes one JSON and one log:
#
#     benchmarks/gpu_check.sh [OUT_PREFIX]      # default benchmarks/results/gpu_check
#
# It installs nothing by default. With KMEANS_XP_INSTALL=1 it installs the
# project's own extras (`pip install -e ".[test,torch,bench]"`) and nothing
# else; CuPy, faiss-gpu and fast-pytorch-kmeans are optional rows, skipped
# with a note where absent. Time limits keep the whole check within 8
# minutes on an H100: 300 s for the tests, 180 s for the benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${1:-benchmarks/results/gpu_check}"
mkdir -p "$(dirname "$out")"
log="$out.log"
: > "$log"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

say() { echo "$@" | tee -a "$log"; }

if [[ "${KMEANS_XP_INSTALL:-0}" == 1 ]]; then
    say "== installing the project's extras"
    pip install --quiet -e ".[test,torch,bench]" >>"$log" 2>&1 || say "install failed (see log)"
fi

say "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$log"
python - >>"$log" 2>&1 <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "free/total", torch.cuda.mem_get_info(0))
EOF

say "== pytest -m gpu (limit 300 s)"
timeout 300 python -m pytest -m gpu -q -p no:cacheprovider -o addopts="" \
    --junitxml="$out.junit.xml" tests >>"$log" 2>&1
tests_rc=$?
tail -n 3 "$log"

say "== benchmarks/run.py --gpu-only --quick (limit 180 s)"
timeout 180 python benchmarks/run.py --gpu-only --quick --out "$out.bench" >>"$log" 2>&1
bench_rc=$?
tail -n 20 "$log"

python - "$out" "$started" "$tests_rc" "$bench_rc" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET

out, started, tests_rc, bench_rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
result = {"started": started, "tests_rc": tests_rc, "bench_rc": bench_rc}
try:
    suite = ET.parse(out + ".junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    result["tests"] = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    result["tests"]["time_s"] = float(suite.get("time", 0))
except (OSError, ET.ParseError, AttributeError) as exc:
    result["tests"] = f"no junit report: {exc}"
try:
    with open(out + ".bench.json") as f:
        result["bench"] = json.load(f)
except OSError as exc:
    result["bench"] = f"no benchmark report: {exc}"
try:
    import torch

    if torch.cuda.is_available():
        result["device"] = torch.cuda.get_device_name(0)
except ImportError:
    result["device"] = "torch not installed"
with open(out + ".json", "w") as f:
    json.dump(result, f, indent=1)
print("json:", out + ".json")
EOF
say "log: $log"
exit $(( tests_rc != 0 || bench_rc != 0 ))
