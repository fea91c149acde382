#!/usr/bin/env bash
# A real Slurm cluster on one host: slurmctld plus 4 emulated nodes (one slurmd each, n1..n4), all
# on 127.0.0.1, everything under one base directory. For the fleet tests and .ci/run.
#
#   tests/slurm/cluster.sh install          apt-get the Debian packages (slurmctld slurmd slurm-client munge)
#   tests/slurm/cluster.sh start BASE       start munged, slurmctld and 4 slurmd; print SLURM_CONF=BASE/slurm.conf
#   tests/slurm/cluster.sh stop BASE        SIGTERM to the pids in BASE's pid files (by pid, never by name)
#
# The tests find the cluster through LDM_DIAG_TEST_SLURM_CONF (the slurm.conf path) and skip without it.
# Emulated nodes: https://slurm.schedmd.com/faq.html#multi_slurmd ; slurm.conf keys:
# https://slurm.schedmd.com/slurm.conf.html ; munge: https://github.com/dun/munge/wiki/Man-8-munged
set -euo pipefail

NODES=${LDM_DIAG_TEST_SLURM_NODES:-4}

free_ports() {  # N free TCP ports on 127.0.0.1, consecutive is not needed
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

searchable_by_all() {  # munged refuses a socket below a directory that others cannot search
  local dir=$1
  while [ "$dir" != / ]; do
    [ $(( 0$(stat -c %a "$dir") & 1 )) -ne 0 ] || return 1
    dir=$(dirname "$dir")
  done
}

pid_files() {
  local base=$1
  ls "$base"/run/slurmd-*.pid "$base"/run/slurmctld.pid "$base"/run/munged.pid 2>/dev/null || true
}

step_daemons() {  # slurmstepd processes of this cluster (they carry its SLURM_CONF), by pid
  local conf=$1 proc
  for proc in /proc/[0-9]*; do
    if tr '\0' '\n' 2>/dev/null <"$proc/environ" | grep -qxF "SLURM_CONF=$conf"; then
      case "$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline")" in slurmstepd*) echo "${proc#/proc/}" ;; esac
    fi
  done
}

stop_cluster() {
  local base=$1 file pid pids=""
  [ -d "$base" ] || return 0
  base=$(cd "$base" && pwd)
  for file in $(pid_files "$base"); do  # the pids first: daemons remove their pid files as they stop
    pid=$(cat "$file" 2>/dev/null || true)
    [ -n "$pid" ] && pids="$pids $pid"
  done
  for pid in $pids $(step_daemons "$base/slurm.conf"); do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do  # up to 5 s for them to exit
    local alive=0
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    if [ "$alive" -eq 0 ]; then
      # a step daemon left waiting for a controller that is gone does not mind SIGTERM
      for pid in $(step_daemons "$base/slurm.conf"); do kill -KILL "$pid" 2>/dev/null || true; done
      if [ -f "$base/run/socket-dir" ]; then rm -rf "$(cat "$base/run/socket-dir")" "$base/run/socket-dir"; fi
      return 0
    fi
    sleep 0.1
  done
  echo "some Slurm daemons under $base did not stop:$pids" >&2
  return 1
}

start_cluster() {
  local base=$1
  mkdir -p "$base"
  base=$(cd "$base" && pwd)
  chmod 755 "$base"
  mkdir -p "$base/munge" "$base/run" "$base/log" "$base/spool"
  chmod 700 "$base/munge"
  chmod 755 "$base/run" "$base/log"
  local key=$base/munge/munge.key socket_dir=$base/run
  if ! searchable_by_all "$base"; then  # e.g. under pytest's or mktemp's private directories
    socket_dir=$(mktemp -d /tmp/ldm-diag-munge.XXXXXX)
    chmod 755 "$socket_dir"
    echo "$socket_dir" >"$base/run/socket-dir"
  fi
  local socket=$socket_dir/munge.socket
  [ -s "$key" ] || mungekey --create --keyfile="$key"
  munged --key-file="$key" --socket="$socket" --pid-file="$base/run/munged.pid" \
    --log-file="$base/log/munged.log" --seed-file="$base/munge/munged.seed"

  local ports host last
  ports=($(free_ports $((NODES + 1))))
  host=$(hostname -s)
  last=$((NODES))
  cat >"$base/slurm.conf" <<EOF
ClusterName=ldmdiag
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
StateSaveLocation=$base/spool/ctld
SlurmdSpoolDir=$base/spool/%n
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd-%n.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd-%n.log
EOF
  local index
  for index in $(seq 1 "$NODES"); do
    echo "NodeName=n$index NodeHostname=$host NodeAddr=127.0.0.1 Port=${ports[$index]} CPUs=1 RealMemory=1000 State=UNKNOWN" >>"$base/slurm.conf"
  done
  echo "PartitionName=debug Nodes=n[1-$last] Default=YES MaxTime=INFINITE State=UP" >>"$base/slurm.conf"
  mkdir -p "$base/spool/ctld"

  export SLURM_CONF=$base/slurm.conf
  slurmctld -f "$SLURM_CONF"
  for index in $(seq 1 "$NODES"); do
    mkdir -p "$base/spool/n$index"
    slurmd -f "$SLURM_CONF" -N "n$index"
  done
  for _ in $(seq 150); do  # up to 15 s until every node is idle
    if [ "$(sinfo -h -o '%T %D' 2>/dev/null)" = "idle $NODES" ]; then
      echo "SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.1
  done
  echo "the Slurm test cluster did not become idle: sinfo says '$(sinfo -h -o '%T %D' 2>&1)'" >&2
  tail -n 20 "$base"/log/*.log >&2 || true
  stop_cluster "$base" || true
  return 1
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v srun >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1; }
}

case "${1:-}" in
  install) install_packages ;;
  start) [ -n "${2:-}" ] || { echo "usage: $0 start BASE" >&2; exit 2; }; start_cluster "$2" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop BASE" >&2; exit 2; }; stop_cluster "$2" ;;
  *) echo "usage: $0 install | start BASE | stop BASE" >&2; exit 2 ;;
esac
