#!/usr/bin/env bash
# Stop a cluster that scripts/slurm-up.sh DIR started: cancel every job first (running jobs
# outlive the daemons), then stop slurmd, slurmctld and, when slurm-up started it and no other
# cluster is left, munged.
set -uo pipefail

dir=${1:?usage: slurm-down.sh DIR}
export SLURM_CONF=$dir/slurm.conf
if [ -f "$SLURM_CONF" ] && [ -f "$dir/slurmctld.pid" ]; then
  ids=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    timeout 10 scancel $ids 2>/dev/null
    for _ in $(seq 150); do
      [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi
stop() {
  local pidfile=$1
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}
stop "$dir/slurmd.pid"
stop "$dir/slurmctld.pid"
if [ -f /run/munge/cbs-started ] && ! pgrep -x slurmctld >/dev/null; then
  rm -f /run/munge/cbs-started
  stop /run/munge/munged.pid
fi
exit 0
