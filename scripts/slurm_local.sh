#!/usr/bin/env bash
# A real single-node SLURM on this machine, for tests and trying the cluster path: munged (own generated key),
# slurmctld and slurmd, as root, without systemd. Everything lives in $TC2_SLURM_DIR (default /tmp/tc2_slurm), on ports
# $TC2_SLURMCTLD_PORT and $TC2_SLURMD_PORT (default 6817, 6818): a test run gives each its own, so that two runs on one
# machine never share daemons (and `stop` stops only the daemons of its own folder).
#   scripts/slurm_local.sh start   writes slurm.conf, starts the daemons, waits for the node; prints SLURM_CONF=...
#   scripts/slurm_local.sh stop    stops the daemons by their own pid files
#   scripts/slurm_local.sh env     prints SLURM_CONF=... (use: export "$(scripts/slurm_local.sh env)")
# Exit status 3 (with the reason on stderr) when SLURM cannot start here: not root, or packages missing.
# No accounting database: finished jobs stay visible to `scontrol show job` for MinJobAge seconds, which is how
# tc2_nb.launch reads job state when sacct has no storage to read.
set -euo pipefail
DIR=${TC2_SLURM_DIR:-/tmp/tc2_slurm}
CONF=$DIR/slurm.conf
cmd=${1:-}

stop_pid() {   # stop the daemon whose pid file is $1 (only that pid), waiting up to 10 s
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

case "$cmd" in
  env) echo "SLURM_CONF=$CONF" ;;
  stop)
    stop_pid "$DIR/slurmd.pid"; stop_pid "$DIR/slurmctld.pid"; stop_pid "$DIR/munged.pid"
    echo "slurm_local: stopped" ;;
  start)
    if [ "$(id -u)" != 0 ]; then echo "slurm_local: needs root (the daemons run as root here)" >&2; exit 3; fi
    for b in munged mungekey slurmctld slurmd sbatch squeue scontrol; do
      command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "slurm_local: $b not found: apt-get install slurm-wlm munge" >&2; exit 3; }
    done
    export PATH=$PATH:/usr/sbin
    "$0" stop >/dev/null                              # a previous run's daemons, if any
    mkdir -p "$DIR"/ctld "$DIR"/spool "$DIR"/munge; chmod 700 "$DIR"/munge; chmod 755 "$DIR"
    [ -f "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key" --bits=1024
    chmod 400 "$DIR/munge/munge.key"
    SOCK=$DIR/munge/munge.socket.2
    munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCK" --pid-file="$DIR/munged.pid" \
           --log-file="$DIR/munged.log" --seed-file="$DIR/munge/munged.seed"
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))   # MB; under the real total, or slurmd drains
    cat > "$CONF" <<EOF
# Written by scripts/slurm_local.sh: one node, one partition, no accounting storage.
ClusterName=tc2local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=${TC2_SLURMCTLD_PORT:-6817}
SlurmdPort=${TC2_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Keep finished jobs (and their final state) in slurmctld's memory for an hour: job state without sacct.
MinJobAge=3600
KillWait=5
# Quick scheduling and a short requeue delay, for a test machine.
SchedulerParameters=defer_batch=0,sched_interval=2
MessageTimeout=10
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$CONF
    slurmctld -f "$CONF" -c -i 2>>"$DIR/start.err" || { echo "slurm_local: slurmctld failed: $(tail -3 "$DIR/slurmctld.log" 2>/dev/null)" >&2; "$0" stop >/dev/null; exit 3; }
    slurmd -f "$CONF" 2>>"$DIR/start.err" || { echo "slurm_local: slurmd failed: $(tail -3 "$DIR/slurmd.log" 2>/dev/null)" >&2; "$0" stop >/dev/null; exit 3; }
    for _ in $(seq 60); do
      state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
      case "$state" in idle*|mix*|alloc*) echo "SLURM_CONF=$CONF"; exit 0 ;; esac
      sleep 0.5
    done
    echo "slurm_local: node did not come up (state '${state:-none}'): $(tail -3 "$DIR/slurmd.log" 2>/dev/null)" >&2
    "$0" stop >/dev/null; exit 3 ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
