#!/bin/sh
# quickstart.sh: the README's first command. It sets up what it can for the fast CPU path, then
# runs the quickstart study, `go run ./cmd/cbs reproduce quickstart`, with this script's
# arguments passed on (scripts/quickstart.sh --scale 0.25, say).
#
# Without OpenBLAS, cbs trains on gonum's pure-Go BLAS, about 3 to 7 times slower. When `cbs
# doctor` finds no OpenBLAS, this script installs Debian's libopenblas0 with apt-get if it runs
# as root, and otherwise prints the command and carries on, on the slower path.
# CBS_BLAS=gonum (the pure-Go BLAS on purpose) skips the check.
set -eu

cd "$(dirname "$0")/.."

say() { printf 'quickstart: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
	say "go was not found on PATH. Install Go 1.26 or later (https://go.dev/dl/), put its bin directory on PATH, and run this again."
	exit 127
fi

case ${CBS_BLAS:-} in
[Gg][Oo][Nn][Uu][Mm]) blas="" ;;
*)
	say "building cbs and asking cbs doctor which BLAS library it finds"
	# The line of `cbs doctor` that names the BLAS library: "blas:    gonum (pure Go): why" when
	# OpenBLAS was not found. Empty when doctor could not run; the study then says why.
	blas=$(go run ./cmd/cbs doctor 2>/dev/null | sed -n 's/^blas: *//p') || blas=""
	;;
esac

case $blas in
gonum*)
	install="apt-get install -y libopenblas0"
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "OpenBLAS not found: installing libopenblas0 with apt-get, for the fast CPU path"
		# A fresh machine may have no package lists yet: update them when the first try fails.
		if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0 >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0 >/dev/null; }; then
			say "libopenblas0 installed"
		else
			say "apt-get could not install libopenblas0; continuing on the pure-Go BLAS, about 3 to 7 times slower"
		fi
	elif command -v apt-get >/dev/null 2>&1; then
		say "OpenBLAS not found, so training runs on the pure-Go BLAS, about 3 to 7 times slower."
		say "For the fast path, run as root (or with sudo): $install, then run this again. Continuing."
	else
		say "OpenBLAS not found, so training runs on the pure-Go BLAS, about 3 to 7 times slower."
		say "For the fast path, install OpenBLAS with your package manager (or set CBS_OPENBLAS to libopenblas.so.0), then run this again. Continuing."
	fi
	;;
esac

exec go run ./cmd/cbs reproduce quickstart "$@"
