#!/bin/sh
# gpu-check.sh: the on-device checks of the CUDA backend, in one command, on a machine with an
# NVIDIA GPU, its driver and PyTorch but no Go and no network. Build first with
# scripts/gpu-build.sh and carry .gpu/ along.
#
#   1. nvidia-smi, where python3 keeps its packages (NVRTC and cuBLAS may be among them), and
#      `cbs doctor`
#   2. the GPU tests with CUDA_LAUNCH_BLOCKING=1 (an asynchronous error then names the op that
#      caused it): per-op parity with the CPU reference (fp32, tf32, bf16), attention
#      reproducibility, whole-model loss and gradients, 200 training steps tracking the CPU
#   3. the ~125M config (d768, 12 layers, 12 heads, seq 1024, vocab 50304, batch 16), timed once
#      with `cbs bench --device cuda` (the test binary's benchmark for a cbs without the flag),
#      beside PyTorch eager with bf16 autocast and SDPA attention
#   4. the quickstart study shrunk 4x on the GPU, when the budget still has room for it
#   CBS_CHECK_CPU=1 adds the CPU-only steps (torch_ref.py and cbs bench on the CPU at the tiny
#   size, the quickstart on the CPU); they need no GPU and are better run anywhere else.
#
# Time: a step is skipped when the time spent so far plus its timeout would pass the budget,
# $CBS_CHECK_BUDGET seconds (default 330), so that a first run leaves device time for a second.
#
# Output: the work happens under a fresh folder in /tmp; at the end at most five files go to
# $OUT (default .gpu/out): summary.txt, cuda-tests.txt (the whole test log), bench-cbs-gpu.json,
# bench-torch-sdpa.json and logs.tar.gz (every step's log). The failing test lines and panics,
# then the summary, are printed last, so the end of stdout alone says what went wrong.
#
# Exit status: 0 when the GPU tests pass, 1 otherwise (benchmarks never fail the check).
set -u
cd "$(dirname "$0")/.."
G=.gpu
OUT="${OUT:-$G/out}"
BUDGET="${CBS_CHECK_BUDGET:-330}"
KILL=5 # seconds between a step's TERM and its KILL
mkdir -p "$OUT" || exit 1
W=$(mktemp -d /tmp/cbs-gpu-check.XXXXXX) || exit 1
mkdir -p "$W/logs"
export CBS_CUDA_CACHE="$W/kernel-cache"
S="$W/summary.txt"
: > "$S"
say() { echo "$*" | tee -a "$S"; }
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
fits() { [ $(($(elapsed) + $1 + KILL)) -le "$BUDGET" ]; }
step() { # step NAME SECONDS CMD...: run with a timeout, output in $W/logs/NAME.txt
	name=$1 secs=$2
	shift 2
	if ! fits "$secs"; then
		say "$name: skipped at $(elapsed) s, its $secs s timeout would pass the $BUDGET s budget"
		return 125
	fi
	t0=$(date +%s)
	timeout -k $KILL "$secs" "$@" > "$W/logs/$name.txt" 2>&1
	rc=$?
	say "$name: exit $rc in $(($(date +%s) - t0)) s"
	return $rc
}

# failures prints, from a `go test -v` log, the log lines of each failing test (t.Errorf's
# file:line and message) with its --- FAIL line, panics with their frames in cbs, and the tests
# still running at a timeout.
failures() {
	awk '
		/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; inlog = 0; next }
		/_test\.go:[0-9]+:/ { buf[cur] = buf[cur] $0 "\n"; inlog = 1; next }
		inlog && /^        / { buf[cur] = buf[cur] $0 "\n"; next }
		{ inlog = 0 }
		/^ *--- FAIL: / { printf "%s", buf[$3]; print; next }
		/^FAIL/ { print; next }
		/^panic:/ || /^\tpanic:/ || /^fatal error:/ { print; p = 1; n = 0; next }
		/^running tests:/ { print; t = 1; next }
		t && /^\t/ { print; next }
		{ t = 0 }
		p && /^cbs\// { print; if ((getline line) > 0) print line; if (++n >= 12) p = 0 }
	' "$1" | cut -c1-400 | head -c 6000
}

tests_rc=1
finish() {
	trap - EXIT INT TERM
	python3 - "$W" >> "$S" 2>&1 <<'PY' || true
import json, os, sys
w = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(w, name)) as f:
            return json.load(f)
    except Exception:
        return None
def med(v):
    return v.get("median", 0) if isinstance(v, dict) else (v or 0)
rows, peak = [], 0
g = load("bench-cbs-gpu.json")
if g:
    info = g.get("gpu") or g.get("info") or {}
    peak = info.get("device", {}).get("peak_bf16_tflops", 0)
    rows.append(("cbs cuda (" + info.get("gemm_precision", "?") + ")", med(g.get("tokens_per_s")), med(g.get("tflops_per_s"))))
t = load("bench-torch-sdpa.json")
if t:
    rows.append(("torch eager bf16 (sdpa)", med(t.get("tokens_per_s")), med(t.get("tflops_per_s"))))
if rows:
    print("\n~125M model, batch 16 x 1024 tokens, median over 10 steps:")
for label, tps, tf in rows:
    print(f"  {label:28s} {tps:12.0f} tokens/s {tf:8.1f} TFLOP/s" + (f"  MFU {100 * tf / peak:.1f}%" if peak else ""))
for name in ("bench-torch-ref-cpu-tiny.json", "bench-cbs-cpu-tiny.json"):
    t = load(name)
    if t:
        print(f"  cpu tiny {name[6:-14]:19s} {med(t.get('tokens_per_s')):12.0f} tokens/s")
PY
	say "gpu tests: $([ $tests_rc -eq 0 ] && echo PASS || echo "FAIL (exit $tests_rc)"); $(elapsed) s of the $BUDGET s budget; work folder $W"
	(cd "$W" && tar -czf logs.tar.gz logs summary.txt $(ls results-*/*/sweep/cbs.json 2>/dev/null)) || true
	cp "$S" "$W/logs.tar.gz" "$OUT/" 2>/dev/null
	[ -f "$W/logs/cuda-tests.txt" ] && cp "$W/logs/cuda-tests.txt" "$OUT/"
	for f in bench-cbs-gpu.json bench-torch-sdpa.json; do
		[ -s "$W/$f" ] && cp "$W/$f" "$OUT/"
	done
	if [ -f "$W/logs/cuda-tests.txt" ] && [ $tests_rc -ne 0 ]; then
		echo
		echo "== failing tests, panics and timeouts (cuda-tests.txt) =="
		failures "$W/logs/cuda-tests.txt"
	fi
	echo
	echo "== summary =="
	cat "$S"
}
trap 'finish; exit 1' INT TERM
trap 'finish' EXIT

for f in cuda.test cbs torch_cuda_bench.py; do
	[ -e "$G/$f" ] || { say "missing $G/$f: run scripts/gpu-build.sh where Go is, and carry .gpu"; exit 1; }
done
say "commit $(cat $G/commit 2>/dev/null || echo unknown), $(date -u +%FT%TZ), budget $BUDGET s"
step nvidia-smi 15 nvidia-smi
grep -E "Driver Version|H200|H100|MiB" "$W/logs/nvidia-smi.txt" | head -4 >> "$S"

# PyTorch may run from a virtual environment whose CUDA wheels hold NVRTC and cuBLAS
# (site-packages/nvidia/cu13/lib); hand its package folders to the library search.
sp=$(timeout 15 python3 -c 'import os, site; print(os.pathsep.join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
if [ -n "$sp" ]; then
	export CBS_SITE_PACKAGES="$sp${CBS_SITE_PACKAGES:+:$CBS_SITE_PACKAGES}"
	say "python3 $(command -v python3), site-packages $sp"
	(IFS=:; for d in $sp; do ls "$d"/nvidia/*/lib/libnvrtc.so.* "$d"/nvidia/*/lib/libcublas.so.* 2>/dev/null; done) | head -4 | sed 's/^/  found /' | tee -a "$S"
fi
step doctor 20 "$G/cbs" doctor

step cuda-tests 170 env CUDA_LAUNCH_BLOCKING=1 "$G/cuda.test" -test.v -test.timeout 160s
tests_rc=$?
T="$W/logs/cuda-tests.txt"
if [ -f "$T" ]; then
	if grep -q "no usable GPU" "$T"; then
		say "cuda-tests: the GPU tests skipped ($(grep -m1 -o 'no usable GPU.*' "$T" | cut -c1-300)), which this check counts as a failure"
		[ $tests_rc -eq 0 ] && tests_rc=1
	fi
	say "cuda-tests: $(grep -c -- '--- PASS' "$T") passed, $(grep -c -- '--- FAIL' "$T") failed, $(grep -c -- '--- SKIP' "$T") skipped"
	grep -E -- "--- (FAIL|SKIP)|^(ok|FAIL)\b|^panic:" "$T" | cut -c1-300 | head -30 >> "$S"
	# TestOpen's log: which driver, NVRTC, cuBLAS and kernel module were used.
	awk '/^ +gpu_test.go:[0-9]+: cuda / { p = 1; print; next } p && /^        / { print; next } { p = 0 }' "$T" | cut -c1-300 | head -5 >> "$S"
else
	tests_rc=1
fi

M125="--hidden 768 --layers 12 --heads 12 --kv-heads 12 --head-dim 64 --ff 3072 --vocab 50304 --seq 1024 --batch 16"
if "$G/cbs" bench --help 2>&1 | grep -q -- "--device"; then
	step bench-cbs-gpu 60 sh -c "'$G/cbs' bench --device cuda $M125 --steps 10 --warmup 3 --json > '$W/bench-cbs-gpu.json'"
else
	step bench-cbs-gpu 60 env CBS_GPU_BENCH="$W/bench-cbs-gpu.json" "$G/cuda.test" -test.run '^TestBenchReport$' -test.v -test.timeout 55s
fi
step bench-torch-sdpa 60 sh -c "python3 '$G/torch_cuda_bench.py' $M125 --sdpa > '$W/bench-torch-sdpa.json'"

if [ "${CBS_CHECK_CPU:-0}" = 1 ]; then
	if [ -f "$G/torch_ref.py" ]; then
		step bench-torch-ref-cpu-tiny 60 sh -c "python3 '$G/torch_ref.py' bench --threads 8 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --head-dim 16 --ff 128 --vocab 260 --seq 64 --batch 16 > '$W/bench-torch-ref-cpu-tiny.json'"
	fi
	step bench-cbs-cpu-tiny 60 sh -c "'$G/cbs' bench --preset tiny --threads 8 --json > '$W/bench-cbs-cpu-tiny.json'"
fi

# The quickstart trains on the Go source tree, which a machine without Go lacks: unpack the copy,
# but only when the study itself still fits.
QS=120
devs=cuda
[ "${CBS_CHECK_CPU:-0}" = 1 ] && devs="cuda cpu"
if [ -f "$G/goroot-src.tar.xz" ] && fits $((QS + 30)); then
	mkdir -p "$W/goroot"
	if step goroot-unpack 30 tar -xJf "$G/goroot-src.tar.xz" -C "$W/goroot"; then
		GOROOT="$W/goroot" && export GOROOT
		for dev in $devs; do
			step "quickstart-$dev" $QS "$G/cbs" reproduce quickstart --scale 0.25 --device "$dev" \
				--runs "$W/runs-$dev" --results "$W/results-$dev"
			grep -h '"statement"' "$W/results-$dev"/quickstart-x0.25/sweep/cbs.json 2>/dev/null | head -1 | sed "s/^ */quickstart-$dev tolerance: /" >> "$S"
		done
	fi
else
	say "quickstart: skipped at $(elapsed) s (needs $((QS + 30)) s of the $BUDGET s budget, and .gpu/goroot-src.tar.xz)"
fi
exit $tests_rc
