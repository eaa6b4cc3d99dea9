#!/usr/bin/env bash
# Times cbs against the PyTorch reference trainer on the same model, alternating the runs so
# both sides see the same machine state, and prints one markdown table row per run.
#
#   CBS_TORCH_REF=path/to/torch_ref.py scripts/bench-torch.sh [ROUNDS] [SHAPE...]
#
# SHAPE is default or d512 (hidden 512, 8 layers, 8 heads, ff 2048, seq 512, batch 8).
# Every run is `cbs bench` / `torch_ref.py bench` with --threads 2 and their default 10 timed
# steps after 3 warmup steps; fp32 is compared with torch fp32, bf16 with torch --autocast bf16.
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for the runs only: each library picks its
# kernels itself, and the table names the ones that ran.
set -euo pipefail
rounds=${1:-3}
shift || true
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(default d512)
ref=${CBS_TORCH_REF:?set CBS_TORCH_REF to the PyTorch reference trainer torch_ref.py}
cbs=${CBS:-cbs}
py=${PYTHON:-/usr/bin/python3}
out=${OUT:-bench-torch.jsonl}
: >"$out"
flags() {
  case $1 in
  default) echo "--batch 16" ;;
  d512) echo "--hidden 512 --layers 8 --heads 8 --kv-heads 8 --head-dim 64 --ff 2048 --seq 512 --batch 8" ;;
  *) echo "unknown shape $1 (default, d512)" >&2; exit 2 ;;
  esac
}
run() { # shape objective precision engine
  local f; f=$(flags "$1")
  local j
  if [ "$4" = cbs ]; then
    # shellcheck disable=SC2086
    j=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$cbs" bench $f --objective "$2" --precision "$3" --threads 2 --json 2>/dev/null)
  else
    local ac=""; [ "$3" = bf16 ] && ac="--autocast bf16"
    # shellcheck disable=SC2086
    j=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$ref" bench $f $ac --objective "$2" --threads 2 2>/dev/null)
  fi
  "$py" -c 'import json,sys; d=json.loads(sys.argv[1]); d["_run"]=dict(shape=sys.argv[2],objective=sys.argv[3],precision=sys.argv[4],engine=sys.argv[5]); print(json.dumps(d))' "$j" "$1" "$2" "$3" "$4" >>"$out"
  echo "round $r: $1 $2 $3 $4 done" >&2
}
for r in $(seq "$rounds"); do
  for s in "${shapes[@]}"; do
    for o in ar mdm; do
      for p in fp32 bf16; do
        run "$s" "$o" "$p" cbs
        run "$s" "$o" "$p" torch
      done
    done
  done
done
"$py" - "$out" <<'PY'
import json, statistics, sys
rows = {}
kernels = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    k = tuple(d["_run"][x] for x in ("shape", "objective", "precision"))
    e = d["_run"]["engine"]
    if e == "cbs":
        med, best = d["tokens_per_s"]["median"], d["tokens_per_s"]["best"]
        kern = d.get("blas", {}).get("openblas_corename", "?")
        if d.get("onednn"):
            kern += ", oneDNN " + d["onednn"].get("isa", "?")
        if d.get("amx"):
            kern += ", AMX tiles"
        if d.get("fp32_products") == "cbs" and d["_run"]["precision"] == "fp32":
            kern = "cbs AVX-512 FMA kernel"
    else:
        med, best = d["tokens_per_s"]["median"], d["tokens_per_s"]["best"]
        kern = d["blas"].get("openblas_corename", "?") + (", autocast " + d["autocast"] if d.get("autocast") else "")
    rows.setdefault(k, {}).setdefault(e, []).append((med, best))
    kernels[(k, e)] = kern
print("| shape, objective, precision | cbs tokens/s median / best | torch tokens/s median / best | cbs / torch median, best | kernels (cbs; torch) |")
print("| --- | --- | --- | --- | --- |")
for k, v in rows.items():
    c, t = v.get("cbs", []), v.get("torch", [])
    if not c or not t:
        continue
    cm = statistics.median(x[0] for x in c); cb = max(x[1] for x in c)
    tm = statistics.median(x[0] for x in t); tb = max(x[1] for x in t)
    print(f"| {k[0]}, {k[1]}, {k[2]} | {cm:,.0f} / {cb:,.0f} (x{len(c)}) | {tm:,.0f} / {tb:,.0f} (x{len(t)}) | {cm/tm:.2f}x, {cb/tb:.2f}x | {kernels[(k,'cbs')]}; {kernels[(k,'torch')]} |")
PY
