#!/bin/sh
# gpu-build.sh: build, on a machine with Go, what scripts/gpu-check.sh runs on a machine with a
# GPU but no Go and no network. Everything goes to .gpu/ (git-ignored), to be carried along:
#   .gpu/cuda.test              the compute/cuda test binary (parity, whole model, 200 steps, bench)
#   .gpu/cbs                    the CLI
#   .gpu/torch_ref.py           the PyTorch reference, read-only ($TORCH_REF; by default the
#                               copy the development setup keeps beside the repository)
#   .gpu/torch_cuda_bench.py    PyTorch eager on CUDA, same model and FLOP count
#   .gpu/goroot-src.tar.xz      the Go source files the quickstart trains on (no Go over there)
# Usage: scripts/gpu-build.sh   (from anywhere; GOARCH defaults to amd64)
set -eu
case "${TORCH_REF:-}" in
"" | /*) ;;
*) TORCH_REF="$(pwd)/$TORCH_REF" ;; # given from where the caller stands, read from the root
esac
cd "$(dirname "$0")/.."
mkdir -p .gpu
export CGO_ENABLED=0 GOOS=linux GOARCH="${GOARCH:-amd64}"
go test -c -o .gpu/cuda.test ./compute/cuda
go build -o .gpu/cbs ./cmd/cbs
ref="${TORCH_REF:-../shared/bench/torch_ref.py}"
if [ -f "$ref" ]; then
	# Read-only: the copy is what the check compares against, not a place to edit the reference.
	rm -f .gpu/torch_ref.py
	cp "$ref" .gpu/torch_ref.py
	chmod a-w .gpu/torch_ref.py
else
	echo "gpu-build: $ref not found; gpu-check.sh's CPU steps (CBS_CHECK_CPU=1) will skip torch_ref.py" >&2
fi
cp compute/cuda/testdata/torch_cuda_bench.py .gpu/
goroot=$(go env GOROOT)
(cd "$goroot" && find src -name '*.go' ! -name '*_test.go' ! -path '*/testdata/*' | LC_ALL=C sort | tar -cf - -T - | xz -T2 -6) > .gpu/goroot-src.tar.xz
git rev-parse HEAD > .gpu/commit 2>/dev/null || true
ls -l .gpu
du -sh .gpu
