#!/usr/bin/env bash
# Start a single-node Slurm cluster (slurmctld + slurmd on localhost) for tests and local trials.
#
#   scripts/slurm-up.sh DIR     writes DIR/slurm.conf, starts the daemons, waits for an idle node
#                               and prints the line to eval: export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-down.sh DIR   cancels every job, then stops what this script started
#
# Needs root (slurmd runs jobs as their owner) and Debian's slurm-wlm and munge packages.
# CBS_SLURM_AUTH=none uses auth/none instead of munge. Ports are picked free from 6817 upwards,
# so a cluster already listening on the default ports is left alone.
set -euo pipefail

dir=${1:?usage: slurm-up.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "slurm-up: must run as root (slurmd runs jobs as the submitting user); uid is $(id -u)" >&2
  exit 1
fi
for b in slurmctld slurmd sinfo; do
  if ! command -v "$b" >/dev/null; then
    echo "slurm-up: $b not found (apt-get install slurm-wlm munge)" >&2
    exit 1
  fi
done

# Two clusters starting at once (two test binaries) would pick the same ports. The daemons must
# not inherit the lock (9>&- below), or it would be held as long as they run.
exec 9>/tmp/cbs-slurm-up.lock
flock 9

auth=${CBS_SLURM_AUTH:-munge}
if [ "$auth" = munge ]; then
  if ! command -v munged >/dev/null; then
    echo "slurm-up: munged not found (apt-get install munge, or CBS_SLURM_AUTH=none)" >&2
    exit 1
  fi
  if ! munge -n </dev/null >/dev/null 2>&1; then
    # munged refuses its key when run as root; it also wants its socket directory.
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged 9>&-
    # slurm-down.sh stops munged when the last cluster it serves is gone.
    touch /run/munge/cbs-started
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  authconf="AuthType=auth/munge
CredType=cred/munge"
else
  authconf="AuthType=auth/none
CredType=cred/none"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ctld=6817
while ! port_free "$ctld" || ! port_free $((ctld + 1)); do ctld=$((ctld + 2)); done

# The node line comes from slurmd -C; a RealMemory at or above what slurmd detects drains the
# node ("Low RealMemory"), so state a little less.
node=$(slurmd -C | head -n 1)
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
node=$(sed -e 's/^NodeName=[^ ]*/NodeName=localhost/' -e "s/RealMemory=[0-9]*/RealMemory=$((mem > 512 ? mem - 256 : mem))/" <<<"$node")

mkdir -p "$dir/state" "$dir/spool" "$dir/log"
cat >"$dir/slurm.conf" <<CONF
ClusterName=cbs
SlurmctldHost=localhost
SlurmctldPort=$ctld
SlurmdPort=$((ctld + 1))
SlurmUser=root
$authconf
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SchedulerParameters=batch_sched_delay=0
KillWait=10
$node State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" -c 9>&-
slurmd -f "$SLURM_CONF" -N localhost 9>&-
for _ in $(seq 300); do
  state=$(timeout 5 sinfo -h -o %t 2>/dev/null || true)
  if [ "$state" = idle ]; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.1
done
echo "slurm-up: the node did not become idle within 30 s (state: ${state:-none}); logs in $dir/log" >&2
exit 1
