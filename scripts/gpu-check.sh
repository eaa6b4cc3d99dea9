#!/bin/sh
# gpu-check.sh: the on-device checks of the CUDA backend, in one command, on a machine with an
# NVIDIA GPU, its driver and PyTorch but no Go and no network. Build first with
# scripts/gpu-build.sh and carry .gpu/ along. Writes everything under $OUT (default .gpu/out)
# and a summary in $OUT/summary.txt; stays well under 10 minutes (every step has a timeout).
#
#   1. nvidia-smi and `cbs doctor`
#   2. the GPU tests: per-op parity with the CPU reference (fp32, tf32, bf16), attention
#      reproducibility, whole-model loss and gradients, 200 training steps tracking the CPU
#   3. the ~125M config (d768, 12 layers, 12 heads, seq 1024, vocab 50304, batch 16):
#      the Go backend through the test binary's benchmark, `cbs bench --device cuda` once the
#      CLI has the flag, and PyTorch eager (bf16 autocast; math and SDPA attention)
#   4. torch_ref.py bench and cbs bench on the CPU, tiny preset, as a sanity check of the pair
#
# Exit status: 0 when the GPU tests pass, 1 otherwise (benchmarks never fail the check).
set -u
cd "$(dirname "$0")/.."
G=.gpu
OUT="${OUT:-$G/out}"
mkdir -p "$OUT"
export CBS_CUDA_CACHE="$OUT/kernel-cache"
S="$OUT/summary.txt"
: > "$S"
say() { echo "$*" | tee -a "$S"; }
START=$(date +%s)
step() { # step NAME SECONDS CMD...: run with a timeout, output in $OUT/NAME.txt
	name=$1 secs=$2
	shift 2
	# Past 8 minutes the rest is skipped, so one call never runs into the device's 10-minute cap.
	if [ $(($(date +%s) - START)) -gt 480 ]; then
		say "$name: skipped, out of time"
		return 124
	fi
	t0=$(date +%s)
	timeout -k 10 "$secs" "$@" > "$OUT/$name.txt" 2>&1
	rc=$?
	say "$name: exit $rc in $(($(date +%s) - t0)) s"
	return $rc
}

for f in cuda.test cbs torch_cuda_bench.py; do
	[ -e "$G/$f" ] || { say "missing $G/$f: run scripts/gpu-build.sh where Go is, and carry .gpu"; exit 1; }
done
say "commit $(cat $G/commit 2>/dev/null || echo unknown), $(date -u +%FT%TZ)"
step nvidia-smi 30 nvidia-smi
grep -E "Driver Version|H200|H100|MiB" "$OUT/nvidia-smi.txt" | head -4 >> "$S"
step doctor 30 "$G/cbs" doctor
step cuda-tests 240 "$G/cuda.test" -test.v -test.timeout 230s
tests_rc=$?
if grep -q "no usable GPU" "$OUT/cuda-tests.txt"; then
	say "cuda-tests: the GPU tests skipped (no usable GPU), which this check counts as a failure"
	[ $tests_rc -eq 0 ] && tests_rc=1
fi
grep -E "^(--- |ok|FAIL|PASS)|no usable GPU" "$OUT/cuda-tests.txt" >> "$S"

M125="--hidden 768 --layers 12 --heads 12 --kv-heads 12 --head-dim 64 --ff 3072 --vocab 50304 --seq 1024 --batch 16"
CBS_GPU_BENCH="$OUT/bench-cbs-gpu.json" step bench-cbs-gpu 120 "$G/cuda.test" -test.run '^TestBenchReport$' -test.v -test.timeout 110s
if "$G/cbs" bench --help 2>&1 | grep -q -- "--device"; then
	step bench-cbs-cli 120 sh -c "'$G/cbs' bench --device cuda $M125 --steps 10 --warmup 3 --json > '$OUT/bench-cbs-cli.json'"
else
	say "bench-cbs-cli: skipped, this cbs has no 'bench --device' flag yet (the test binary's benchmark above times the same model)"
fi
step bench-torch-eager 150 sh -c "python3 '$G/torch_cuda_bench.py' $M125 > '$OUT/bench-torch-eager.json'"
step bench-torch-sdpa 150 sh -c "python3 '$G/torch_cuda_bench.py' $M125 --sdpa > '$OUT/bench-torch-sdpa.json'"
if [ -f "$G/torch_ref.py" ]; then
	step bench-torch-ref-cpu-tiny 60 sh -c "python3 '$G/torch_ref.py' bench --threads 8 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --head-dim 16 --ff 128 --vocab 260 --seq 64 --batch 16 > '$OUT/bench-torch-ref-cpu-tiny.json'"
fi
step bench-cbs-cpu-tiny 60 sh -c "'$G/cbs' bench --preset tiny --threads 8 --json > '$OUT/bench-cbs-cpu-tiny.json'"

# The quickstart trains on the Go source tree, which a machine without Go lacks: unpack the copy.
if [ -f "$G/goroot-src.tar.xz" ]; then
	mkdir -p "$OUT/goroot" && tar -xJf "$G/goroot-src.tar.xz" -C "$OUT/goroot" && GOROOT=$(cd "$OUT/goroot" && pwd) && export GOROOT
fi
# The quickstart study, shrunk 4x, on the GPU and on the CPU: the two CBS estimates should agree
# within their intervals (the runs are not bit-identical across backends).
for dev in cuda cpu; do
	step "quickstart-$dev" 120 "$G/cbs" reproduce quickstart --scale 0.25 --device "$dev" \
		--runs "$OUT/runs-$dev" --results "$OUT/results-$dev"
	grep -h '"statement"' "$OUT/results-$dev"/quickstart-x0.25/sweep/cbs.json 2>/dev/null | head -1 | sed "s/^ */quickstart-$dev tolerance: /" >> "$S"
done

python3 - "$OUT" >> "$S" 2>&1 <<'PY' || true
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception as e:
        return None
rows = []
g = load("bench-cbs-gpu.json")
if g:
    rows.append(("cbs cuda (" + g["info"]["gemm_precision"] + ")", g["tokens_per_s"], g["tflops_per_s"], g.get("mfu_vs_bf16_peak")))
c = load("bench-cbs-cli.json")
if c:
    rows.append(("cbs bench --device cuda", c["tokens_per_s"]["median"], c.get("gflops_per_s", {}).get("median", 0) / 1e3, c.get("mfu")))
for name, label in (("bench-torch-eager.json", "torch eager bf16 (math attention)"), ("bench-torch-sdpa.json", "torch eager bf16 (sdpa)")):
    t = load(name)
    if t:
        rows.append((label, t["tokens_per_s"]["median"], t["tflops_per_s"], None))
print("\n~125M model, batch 16 x 1024 tokens, median over 10 steps:")
for label, tps, tf, mfu in rows:
    print(f"  {label:36s} {tps:12.0f} tokens/s {tf:8.1f} TFLOP/s" + (f"  MFU {100*mfu:.1f}%" if mfu else ""))
for name in ("bench-torch-ref-cpu-tiny.json", "bench-cbs-cpu-tiny.json"):
    t = load(name)
    if t:
        print(f"  cpu tiny {name[6:-14]:27s} {t['tokens_per_s']['median']:12.0f} tokens/s")
PY
say "gpu tests: $( [ $tests_rc -eq 0 ] && echo PASS || echo "FAIL (exit $tests_rc)" )"
exit $tests_rc
