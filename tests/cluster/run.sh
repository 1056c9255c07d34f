#!/usr/bin/env bash
# Real single-node SLURM round trip for the koopnet workflow (issue 7).
#
# Installs (Debian 12) munge, slurmctld, slurmd, slurm-client, slurmdbd, mariadb-server and
# snakemake-executor-plugin-slurm (into the repo's .venv) when missing, starts a private
# single-node SLURM cluster with accounting (munged, mariadbd, slurmdbd, slurmctld, slurmd)
# in a temporary directory on free ports, runs the tiny sweep of tests/cluster/config.yaml
# once locally and once through `--executor slurm` with workflow/profiles/slurm, checks
# that both collected sweep.nc files are identical, and stops exactly the daemons it
# started (by their recorded PIDs). Exits non-zero on any failure.
#
# Needs root (package installation, daemons switching to the munge/mysql users).
# Non-interactive and idempotent: every run uses a fresh temporary directory.
#
# Environment (all optional):
#   KOOPNET_CLUSTER_TIMEOUT   bound in seconds for the SLURM run (default 300)
#   KOOPNET_CLUSTER_SNAKEFILE Snakefile to run (default: the repo's Snakefile)
#   KOOPNET_CLUSTER_CONFIG    sweep config (default tests/cluster/config.yaml)
#   KOOPNET_CLUSTER_TARGET    target relative to the workdir (default
#                             results/<the config's only sweep>/sweep.nc)
#   KOOPNET_CLUSTER_KEEP=1    keep the temporary directory (logs) even on success
set -Eeuo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV="$REPO/.venv"
PY="$VENV/bin/python"
SNAKEFILE=${KOOPNET_CLUSTER_SNAKEFILE:-$REPO/Snakefile}
CONFIGFILE=${KOOPNET_CLUSTER_CONFIG:-$HERE/config.yaml}
PROFILE="$REPO/workflow/profiles/slurm"
SLURM_BOUND=${KOOPNET_CLUSTER_TIMEOUT:-300}
LOCAL_BOUND=300
CLUSTER=koopnettest
PARTITION=koopnet
ACCOUNT=koopnet
START=$SECONDS

log() { printf '[cluster %s %3ds] %s\n' "$(date +%T)" "$((SECONDS - START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, starts daemons)"
[[ -x $PY ]] || die "no venv at $VENV (run 'make test' first, it creates it)"
[[ -f $SNAKEFILE ]] || die "no Snakefile at $SNAKEFILE"
[[ -f $CONFIGFILE ]] || die "no sweep config at $CONFIGFILE"

# ---------------------------------------------------------------- cleanup (trap EXIT)
T=""
POLICY_RC_CREATED=0
DAEMONS=()      # "name:pid", in start order
SLURMCTLD_PID=""
LOCAL_PID=""
LIST_PID=""
ETC_CONF=/etc/slurm/slurm.conf
ETC_CONF_CREATED=0

pid_alive() { # alive and not a zombie
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

stop_pid() { # stop_pid NAME PID: SIGTERM, wait up to 15 s, then SIGKILL
    local name=$1 pid=$2 i
    pid_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        pid_alive "$pid" || break
        sleep 0.5
    done
    if pid_alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
}

cleanup() {
    local rc=$? i entry
    set +e
    trap - EXIT INT TERM
    if [[ -n $SLURMCTLD_PID ]] && pid_alive "$SLURMCTLD_PID"; then
        # Cancel whatever is left in our private cluster (only after a failed run).
        local -a jobs
        mapfile -t jobs < <(timeout 10 squeue -h -o %i 2>/dev/null)
        if ((${#jobs[@]})); then
            log "cancelling leftover jobs: ${jobs[*]}"
            timeout 10 scancel "${jobs[@]}"
            sleep 3
        fi
    fi
    # timeout(1) passes SIGTERM on to the local snakemake run.
    if [[ -n $LOCAL_PID ]]; then stop_pid "local snakemake run" "$LOCAL_PID"; fi
    if [[ -n $LIST_PID ]]; then stop_pid "snakemake --list-rules" "$LIST_PID"; fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        entry=${DAEMONS[i]}
        stop_pid "${entry%%:*}" "${entry#*:}"
    done
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; fi
    if ((ETC_CONF_CREATED)); then rm -f "$ETC_CONF"; fi
    if [[ -n $T && -d $T ]]; then
        if ((rc != 0)); then
            for f in "$T"/log/*.log "$T"/munge/*.log "$T"/db/*.log; do
                [[ -s $f ]] || continue
                echo "----- tail of $f" >&2
                tail -n 25 "$f" >&2
            done
            log "FAILED (exit $rc); logs kept in $T"
        elif [[ ${KOOPNET_CLUSTER_KEEP:-0} == 1 ]]; then
            log "logs kept in $T"
        else
            rm -rf "$T"
        fi
    fi
    if ((rc == 0)); then log "PASSED in $((SECONDS - START)) s"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "failed: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# One harness at a time per machine (it uses /etc/slurm/slurm.conf, see below).
mkdir -p /run/lock
exec 9>/run/lock/koopnet-cluster-test.lock
flock -w 900 9 || die "another tests/cluster/run.sh is still running"

# ---------------------------------------------------------------- install what is missing
missing=()
for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client \
    slurmdbd:slurmdbd mariadbd:mariadb-server mariadb-install-db:mariadb-server; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    # Keep apt's maintainer scripts from starting system-wide services we would not own.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
fi
if ! "$PY" -c 'import snakemake_executor_plugin_slurm' 2>/dev/null; then
    log "installing snakemake-executor-plugin-slurm into $VENV"
    "$PY" -m pip install -q snakemake-executor-plugin-slurm
fi

# ---------------------------------------------------------------- configuration
T=$(mktemp -d "${TMPDIR:-/tmp}/koopnet-slurm.XXXXXX")
chmod 755 "$T" # the munge and mysql users must traverse it
mkdir -p "$T"/{etc,log,run,state/slurmctld,state/slurmd,munge,db,site,local,slurm}
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
read -r CTLD_PORT SLURMD_PORT DBD_PORT < <("$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
DB_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

render() { # render TEMPLATE OUT: replace @NAME@ by $NAME
    sed -e "s|@T@|$T|g" -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@CLUSTER@|$CLUSTER|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@ACCOUNT@|$ACCOUNT|g" "$1" >"$2"
    if grep -q '@[A-Z_][A-Z_]*@' "$2"; then die "unfilled placeholder in $2"; fi
}
render "$HERE/slurm.conf.in" "$T/etc/slurm.conf"
render "$HERE/slurmdbd.conf.in" "$T/etc/slurmdbd.conf"
chmod 600 "$T/etc/slurmdbd.conf"
render "$HERE/site-profile.yaml.in" "$T/site/config.yaml"
# Our own commands and daemons read this config; slurmdbd finds slurmdbd.conf next to it.
export SLURM_CONF="$T/etc/slurm.conf"
# Inside a job, snakemake-executor-plugin-slurm-jobstep strips all SLURM_* variables
# (SLURM_CONF too) before it calls srun, so srun only finds the default
# /etc/slurm/slurm.conf: point that at ours for the duration of the run.
if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == */koopnet-slurm.*/etc/slurm.conf ]]; then
        rm -f "$ETC_CONF" # left behind by a killed run of this harness
    else
        die "$ETC_CONF exists: this machine has its own SLURM; run the harness on a throw-away machine"
    fi
fi
mkdir -p /etc/slurm
ln -s "$SLURM_CONF" "$ETC_CONF"
ETC_CONF_CREATED=1
export MYSQL_UNIX_PORT="$T/db/mysqld.sock"
log "workdir $T (host $HOST, $CPUS CPUs, ${MEM_MB} MB, ports ctld=$CTLD_PORT slurmd=$SLURMD_PORT dbd=$DBD_PORT)"

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local bound=$1 what=$2 t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - t0 < bound)) || die "timed out after ${bound}s waiting for $what"
        sleep 0.5
    done
}

start() { # start NAME COMMAND...: run in the background, record its PID
    local name=$1
    shift
    "$@" >>"$T/log/$name.stdout" 2>&1 </dev/null &
    DAEMONS+=("$name:$!")
    log "started $name (pid $!)"
}

# ---------------------------------------------------------------- local run (background)
TARGET=${KOOPNET_CLUSTER_TARGET:-$("$PY" - "$CONFIGFILE" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
sweeps = cfg.get("sweeps") or {}
names = list(sweeps) if isinstance(sweeps, dict) else [s["name"] for s in sweeps]
if len(names) != 1:
    sys.exit(f"expected exactly one sweep in {sys.argv[1]}, found {names}")
print(f"results/{names[0]}/sweep.nc")
EOF
)}
# (--configfile takes several values: the target goes first)
SMK=("$VENV/bin/snakemake" "$TARGET" --snakefile "$SNAKEFILE" --configfile "$CONFIGFILE")

# The local run mostly needs CPU while the cluster start-up mostly waits: overlap them.
log "local run (background) -> $T/local/$TARGET"
timeout -s KILL "$LOCAL_BOUND" "${SMK[@]}" --directory "$T/local" --cores 2 \
    >"$T/log/snakemake-local.log" 2>&1 </dev/null &
LOCAL_PID=$!
# (listed in the background too; checked below, before the SLURM run)
mkdir -p "$T/rules"
"$VENV/bin/snakemake" --list-rules --snakefile "$SNAKEFILE" --configfile "$CONFIGFILE" \
    --directory "$T/rules" >"$T/rules/list.txt" 2>"$T/log/list-rules.log" </dev/null &
LIST_PID=$!

# ---------------------------------------------------------------- munge
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$T/munge"
chmod 755 "$T/munge" # munged insists that everyone may reach its socket
chmod 400 "$T/munge/munge.key"
# setpriv execs munged, so $! is munged's own PID.
start munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --socket="$T/munge/munge.socket" --key-file="$T/munge/munge.key" \
    --pid-file="$T/munge/munged.pid" --seed-file="$T/munge/munged.seed" \
    --log-file="$T/munge/munged.log"
munge_ok() { munge -S "$T/munge/munge.socket" -n | unmunge -S "$T/munge/munge.socket"; }
wait_for 20 munged munge_ok

# ---------------------------------------------------------------- MariaDB + slurmdbd
chown mysql:mysql "$T/db"
mariadb-install-db --no-defaults --user=mysql --datadir="$T/db/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$T/db/mariadb-install.txt" 2>&1 ||
    die "mariadb-install-db failed (see $T/db/mariadb-install.txt)"
# mariadbd switches to the mysql user itself, keeping its PID.
start mariadbd mariadbd --no-defaults --user=mysql --datadir="$T/db/data" \
    --socket="$T/db/mysqld.sock" --pid-file="$T/db/mysqld.pid" --skip-networking \
    --log-error="$T/db/mariadb.log" --innodb-buffer-pool-size=64M
sql() { mariadb --no-defaults --socket="$T/db/mysqld.sock" -u root -e "$1"; }
wait_for 60 mariadbd sql 'SELECT 1'
sql "CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

start slurmdbd slurmdbd -D
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" Description=koopnet-test Organization=koopnet >/dev/null
sacctmgr -i add user root Account="$ACCOUNT" >/dev/null

# ---------------------------------------------------------------- slurmctld + slurmd
start slurmctld slurmctld -D -i
SLURMCTLD_PID=${DAEMONS[-1]#*:}
wait_for 60 slurmctld scontrol ping
start slurmd slurmd -D -N "$HOST"
node_idle() { [[ $(sinfo -h -N -n "$HOST" -o %t) == idle ]]; }
wait_for 90 "node $HOST to be idle" node_idle
log "cluster up: $(sinfo -h -o '%P %a %D %t %c CPUs %m MB')"

# ---------------------------------------------------------------- profile vs workflow
# Every rule the profile names must exist in the workflow (a renamed rule would silently
# lose its resources or its group).
rc=0
wait "$LIST_PID" || rc=$?
LIST_PID=""
((rc == 0)) || die "snakemake --list-rules failed (see $T/log/list-rules.log)"
"$PY" - "$PROFILE/config.yaml" "$T/rules/list.txt" <<'EOF' || die "profile names rules the workflow does not have"
import sys, yaml
profile = yaml.safe_load(open(sys.argv[1]))
rules = {line.strip() for line in open(sys.argv[2]) if line.strip()}
named = set()
for key in ("set-resources", "set-threads", "groups"):
    named |= set(profile.get(key) or {})
unknown = sorted(named - rules)
if unknown:
    sys.exit(f"{sys.argv[1]} names unknown rules {unknown}; the workflow has {sorted(rules)}")
EOF

# ---------------------------------------------------------------- SLURM run
# The profile as shipped; the site's part (partition, account) comes from a site profile,
# as in docs/cluster.md. --retries 0: a flaky job must fail the test, not be retried.
log "SLURM run -> $T/slurm/$TARGET (bound ${SLURM_BOUND}s)"
timeout -s KILL "$SLURM_BOUND" "${SMK[@]}" --directory "$T/slurm" \
    --profile "$T/site" --workflow-profile "$PROFILE" --retries 0 \
    >"$T/log/snakemake-slurm.log" 2>&1 ||
    { tail -n 60 "$T/log/snakemake-slurm.log" >&2; die "SLURM run failed or timed out"; }

# The run must really have gone through SLURM, with the profile's grouping.
submitted=$(sacct -n -X -o JobID,JobName%40,State,AllocCPUS,ReqMem,Timelimit,Elapsed -S now-1hour)
log "SLURM jobs of this run:"
echo "$submitted" >&2
njobs=$(grep -c . <<<"$submitted" || true)
((njobs >= 1)) || die "sacct shows no jobs: the run did not go through SLURM"
if grep -v ' COMPLETED ' <<<"$submitted" | grep -q .; then die "not all SLURM jobs COMPLETED"; fi
# (the site profile keeps the logs of successful jobs; grouped submissions log under group_*)
compgen -G "$T/slurm/.snakemake/slurm_logs/group_sweepjob*" >/dev/null ||
    die "no grouped submission (group sweepjob) in $T/slurm/.snakemake/slurm_logs"

log "waiting for the local run"
rc=0
wait "$LOCAL_PID" || rc=$?
LOCAL_PID=""
if ((rc != 0)); then
    tail -n 40 "$T/log/snakemake-local.log" >&2
    die "local run failed (exit $rc)"
fi

log "comparing sweep.nc"
"$PY" "$HERE/compare.py" "$T/local/$TARGET" "$T/slurm/$TARGET"
