#!/usr/bin/env bash
# Real services for hpclaunch's integration tests, on one Debian 12 machine (root, no systemd):
#   - a single-node Slurm (slurmctld + slurmd + munged) with 4 fake GPUs and partitions debug/gpu,
#   - PBS-style qsub/qstat/qdel (Debian's slurm-wlm-torque over that Slurm; a TaskProlog adds PBS_*),
#   - a loopback sshd on 127.0.0.1:2222 with its own host and client keys,
#   - "jump": a bastion sshd on 127.0.0.1:2223 (user hpcjump, forwarding only) and a "login node"
#     sshd on 127.0.0.2:2224 that admits only connections the bastion makes (scripts/jump/);
#     plus an MFA login node on 127.0.0.2:2225 (key, then a keyboard-interactive code via PAM).
#
#   - rootful Podman (runc, cgroupfs: scripts/podman/containers.conf) and a small local image
#     localhost/hpclaunch-standin:latest with Python and the stand-in (no registry needed),
#   - "twonode": a real two-node Slurm beside the single-node one (scripts/twonode.sh).
#
# Usage: bash scripts/services.sh install|start|stop|restart|status|env
#        [slurm|sshd|jump|podman|twonode|all]   (default all)
#   install  apt packages (skipped when already installed), keys, config files; starts nothing
#   start    install, then start what is not running yet (restarts a service whose config changed)
#   stop     cancel all Slurm jobs, then stop the daemons by their pidfiles
#   status   one line per service; exit 0 when all asked-for services are up, 3 otherwise
#   env      eval-able `export HPCLAUNCH_TEST_...=...` lines for the services that are up
#            (e.g. `eval "$(bash scripts/services.sh env)"`); exit 3 if one asked for is down
#
# Environment: HPCLAUNCH_SLURM_CPUS (CPUs the node advertises, default 8; at least the real count).
# Config templates and the TaskProlog live in scripts/slurm/. See /work/shared/reference/slurm.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATES=$HERE/slurm

APT_PACKAGES=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge slurm-wlm-torque
              openssh-server openssh-client iproute2 podman runc)
PODMAN_PACKAGES=(podman runc)
PODMAN_IMAGE=localhost/hpclaunch-standin:latest
SLURM_PACKAGES=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge slurm-wlm-torque)
SSH_PACKAGES=(openssh-server openssh-client iproute2)

ADVERTISED_CPUS=${HPCLAUNCH_SLURM_CPUS:-8}
GPUS=4
PARTITION=debug
GPU_PARTITION=gpu
# Preemption tests: a job in URGENT_PARTITION preempts jobs in SCAVENGER_PARTITION (GraceTime=10).
SCAVENGER_PARTITION=scavenger
URGENT_PARTITION=urgent
FAKEGPU_DIR=/run/fakegpu
PBS_NODEFILE_DIR=/tmp/hpclaunch-pbs

SLURM_ETC=/etc/slurm
SLURM_CONF=$SLURM_ETC/slurm.conf
GRES_CONF=$SLURM_ETC/gres.conf
TASKPROLOG=$SLURM_ETC/pbs_taskprolog.sh
SLURM_LOG_DIR=/var/log/slurm
SLURMCTLD_LOG=$SLURM_LOG_DIR/slurmctld.log
SLURMD_LOG=$SLURM_LOG_DIR/slurmd.log
SLURMCTLD_PIDFILE=/run/slurmctld.pid
SLURMD_PIDFILE=/run/slurmd.pid
SLURMCTLD_PORT=6817
SLURMD_PORT=6818
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PIDFILE=$MUNGE_RUN/munged.pid
SLURM_START_TIMEOUT=20

SSH_DIR=/etc/ssh/hpclaunch-test
SSH_HOST=127.0.0.1
SSH_PORT=2222
SSH_USER=root
SSHD_CONFIG=$SSH_DIR/sshd_config
SSHD_LOG=$SSH_DIR/sshd.log
SSHD_PIDFILE=$SSH_DIR/sshd.pid
SSH_HOST_KEY=$SSH_DIR/ssh_host_ed25519_key
SSH_CLIENT_KEY=$SSH_DIR/id_ed25519
SSH_AUTHORIZED_KEYS=$SSH_DIR/authorized_keys
SSH_KNOWN_HOSTS=$SSH_DIR/known_hosts

JUMP_DIR=/etc/ssh/hpclaunch-jump
JUMP_HOST=127.0.0.1
JUMP_PORT=2223
JUMP_USER=hpcjump
LOGIN_HOST=127.0.0.2
LOGIN_PORT=2224
LOGIN_USER=root
JUMP_CLIENT_KEY=$JUMP_DIR/id_ed25519
JUMP_KNOWN_HOSTS=$JUMP_DIR/known_hosts
BASTION_CONFIG=$JUMP_DIR/bastion_config
BASTION_PIDFILE=$JUMP_DIR/bastion.pid
BASTION_LOG=$JUMP_DIR/bastion.log
LOGIN_CONFIG=$JUMP_DIR/login_config
LOGIN_PIDFILE=$JUMP_DIR/login_gate.pid
LOGIN_LOG=$JUMP_DIR/login.log
LOGIN_GATE=$HERE/jump/login_gate.py
# The MFA login node: publickey,keyboard-interactive; PAM (pam_exec) compares the code with
# $MFA_CODE_FILE. Its PAM file is bind-mounted over /etc/pam.d/sshd in a private mount
# namespace of each of its sshd -i processes, so the machine's own PAM setup is untouched.
MFA_PORT=2225
MFA_CONFIG=$JUMP_DIR/mfa_config
MFA_PAM=$JUMP_DIR/mfa_pam
MFA_CHECK=$JUMP_DIR/mfa_check.sh
MFA_CODE_FILE=$JUMP_DIR/mfa_code
MFA_PIDFILE=$JUMP_DIR/mfa_gate.pid
MFA_LOG=$JUMP_DIR/mfa.log

LOCKFILE=/run/lock/hpclaunch-services.lock

# ---------------------------------------------------------------------------------------- helpers

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    printf 'services: ERROR: %s\n' "$*" >&2
    exit 1
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"; }

# Serialise install/start/stop: other engineers' test runs may call this script at the same time.
# Every daemon is started with `9>&-`: one that inherited fd 9 would hold the lock for ever.
take_lock() {
    mkdir -p "$(dirname "$LOCKFILE")"
    exec 9>"$LOCKFILE"
    flock -w 180 9 || die "another services.sh has held $LOCKFILE for 180 s"
}

# pid from a pidfile, printed only if that process is alive and is the expected program.
# Daemons are only ever found through their pidfiles, never by process name.
pidfile_pid() {
    local pidfile=$1 comm=$2 pid
    [ -r "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$comm" ] || return 1
    echo "$pid"
}

alive() { pidfile_pid "$1" "$2" >/dev/null; }

# TERM the pidfile's process, wait up to $3 s, then KILL it. Returns once it has gone.
stop_pidfile() {
    local pidfile=$1 comm=$2 wait_s=${3:-10} pid i
    if ! pid=$(pidfile_pid "$pidfile" "$comm"); then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $comm (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        [ -e "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -e "/proc/$pid" ]; then
        log "$comm (pid $pid) still alive after ${wait_s} s: sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [ -e "/proc/$pid" ] || break
            sleep 0.1
        done
    fi
    [ -e "/proc/$pid" ] && die "$comm (pid $pid) would not die"
    rm -f "$pidfile"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port_closed() {
    local port=$1 what=$2 i
    for ((i = 0; i < 100; i++)); do
        port_open "$port" || return 0
        sleep 0.1
    done
    die "port $port is still in use 10 s after stopping $what (not a process from its pidfile?)"
}

# Install $2 (a file) to $1 with mode $3 if the content differs. Returns 0 if it changed.
install_if_changed() {
    local dest=$1 src=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        rm -f "$src"
        return 1
    fi
    install -m "$mode" "$src" "$dest"
    rm -f "$src"
    return 0
}

tail_logs() {
    local f
    for f in "$@"; do
        printf -- '----- last lines of %s -----\n' "$f" >&2
        if [ -r "$f" ]; then tail -n 25 "$f" >&2; else echo "(no such file)" >&2; fi
    done
}

# --------------------------------------------------------------------------------------- packages

packages_missing() {
    local pkg missing=()
    for pkg in "$@"; do
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]; then
            missing+=("$pkg")
        fi
    done
    echo "${missing[*]}"
}

install_packages() {
    local wanted=("$@") missing t0
    missing=$(packages_missing "${wanted[@]}")
    if [ -z "$missing" ]; then
        log "packages already installed (${wanted[*]})"
        return 0
    fi
    t0=$(now)
    log "installing with apt-get: $missing"
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-q -o DPkg::Lock::Timeout=180)
    apt-get "${apt_opts[@]}" update >/tmp/hpclaunch-apt-update.log 2>&1 \
        || { tail -n 20 /tmp/hpclaunch-apt-update.log >&2; die "apt-get update failed"; }
    # One call for the whole set, so both services' packages come in one go.
    apt-get "${apt_opts[@]}" install -y --no-install-recommends "${APT_PACKAGES[@]}" \
        >/tmp/hpclaunch-apt-install.log 2>&1 \
        || { tail -n 30 /tmp/hpclaunch-apt-install.log >&2; die "apt-get install failed"; }
    missing=$(packages_missing "${wanted[@]}")
    [ -z "$missing" ] || die "still not installed after apt-get: $missing"
    log "packages installed in $(since "$t0") s (log: /tmp/hpclaunch-apt-install.log)"
}

# ------------------------------------------------------------------------------------------ slurm

node_name() {
    local name
    name=$(hostname -s 2>/dev/null || true)
    # slurmd -N means the name never has to resolve; fall back when it would make odd config.
    if [[ ! $name =~ ^[A-Za-z][A-Za-z0-9-]{0,39}$ ]]; then
        name=localhost
    fi
    echo "$name"
}

advertised_cpus() {
    local real=$1
    [[ $ADVERTISED_CPUS =~ ^[1-9][0-9]*$ ]] || die "HPCLAUNCH_SLURM_CPUS must be a positive integer"
    if ((ADVERTISED_CPUS < real)); then echo "$real"; else echo "$ADVERTISED_CPUS"; fi
}

render() {
    local template=$1 out=$2
    shift 2
    local args=() kv
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    [ -r "$template" ] || die "missing template $template"
    sed "${args[@]}" "$template" >"$out"
    if grep -q '@[A-Z_]*@' "$out"; then
        die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | sort -u | tr '\n' ' ')"
    fi
}

SLURM_CONFIG_CHANGED=0

configure_slurm() {
    local hw real_cpus real_mem node cpus tmp
    # munge: key, runtime dir.
    if [ ! -s "$MUNGE_KEY" ]; then
        log "creating $MUNGE_KEY"
        mungekey --create --keyfile="$MUNGE_KEY" --force
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"

    install -d -o slurm -g slurm -m 0755 /var/lib/slurm /var/lib/slurm/slurmctld "$SLURM_LOG_DIR"
    install -d -m 0755 /var/lib/slurm/slurmd "$SLURM_ETC"

    hw=$(slurmd -C 2>/dev/null | head -n 1) || die "slurmd -C failed"
    real_cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    real_mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [ -n "$real_cpus" ] && [ -n "$real_mem" ] || die "cannot read CPUs/RealMemory from 'slurmd -C': $hw"
    node=$(node_name)
    cpus=$(advertised_cpus "$real_cpus")

    tmp=$(mktemp)
    render "$TEMPLATES/slurm.conf.in" "$tmp" NODE="$node" CPUS="$cpus" REAL_CPUS="$real_cpus" \
        REAL_MEM="$real_mem" GPUS="$GPUS"
    if install_if_changed "$SLURM_CONF" "$tmp" 0644; then
        log "wrote $SLURM_CONF (node $node, CPUs=$cpus advertised / $real_cpus real, RealMemory=$real_mem)"
        SLURM_CONFIG_CHANGED=1
    fi
    tmp=$(mktemp)
    render "$TEMPLATES/gres.conf.in" "$tmp" NODE="$node" FAKEGPU_DIR="$FAKEGPU_DIR" \
        LAST_GPU="$((GPUS - 1))"
    if install_if_changed "$GRES_CONF" "$tmp" 0644; then
        log "wrote $GRES_CONF"
        SLURM_CONFIG_CHANGED=1
    fi
    tmp=$(mktemp)
    cp "$TEMPLATES/pbs_taskprolog.sh" "$tmp"
    if install_if_changed "$TASKPROLOG" "$tmp" 0755; then
        log "wrote $TASKPROLOG"
    fi
}

# Runtime state under /run and /tmp does not survive a reboot: recreate it on every start.
slurm_runtime_dirs() {
    local i
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -m 0755 "$FAKEGPU_DIR"
    for ((i = 0; i < GPUS; i++)); do
        [ -e "$FAKEGPU_DIR/nvidia$i" ] || : >"$FAKEGPU_DIR/nvidia$i"
    done
    install -d -m 1777 "$PBS_NODEFILE_DIR"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    local i
    if alive "$MUNGE_PIDFILE" munged && munge_ok; then
        return 0
    fi
    if alive "$MUNGE_PIDFILE" munged; then
        stop_pidfile "$MUNGE_PIDFILE" munged 5
    fi
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged 9>&- || die "munged did not start (see /var/log/munge/munged.log)"
    for ((i = 0; i < 50; i++)); do
        munge_ok && return 0
        sleep 0.1
    done
    tail_logs /var/log/munge/munged.log
    die "munged started but 'munge -n | unmunge' fails"
}

node_state() { sinfo -h -N -n "$(node_name)" -o %T 2>/dev/null | head -n 1 | tr -d '*~#!%$@^-' || true; }

wait_slurm_up() {
    local t0=$1 i state="" resumed=0
    for ((i = 0; i < SLURM_START_TIMEOUT * 10; i++)); do
        state=$(node_state)
        case "$state" in
            idle | mixed | allocated | completing) return 0 ;;
            drained | draining | down | fail | failing)
                # Left over from an earlier run (e.g. a killed job): this cluster is ours alone.
                if ((resumed == 0)); then
                    log "node is '$state' ($(sinfo -h -R -o '%E' 2>/dev/null | head -n 1)); resuming it"
                    scontrol update NodeName="$(node_name)" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 0.1
    done
    tail_logs "$SLURMCTLD_LOG" "$SLURMD_LOG"
    die "Slurm node not idle ${SLURM_START_TIMEOUT} s after start (sinfo state: '${state:-none}')"
}

start_slurm() {
    local t0 node
    t0=$(now)
    configure_slurm
    slurm_runtime_dirs
    if ((SLURM_CONFIG_CHANGED)) && { alive "$SLURMCTLD_PIDFILE" slurmctld || alive "$SLURMD_PIDFILE" slurmd; }; then
        log "Slurm config changed: restarting Slurm"
        stop_slurm
        slurm_runtime_dirs
    fi
    start_munge
    node=$(node_name)

    if ! alive "$SLURMCTLD_PIDFILE" slurmctld; then
        # A slurmctld still saving state can look alive right after a stop: re-check the port.
        wait_port_closed "$SLURMCTLD_PORT" slurmctld
        log "starting slurmctld"
        /usr/sbin/slurmctld 9>&- || { tail_logs "$SLURMCTLD_LOG"; die "slurmctld failed to start"; }
    fi
    if ! alive "$SLURMD_PIDFILE" slurmd; then
        wait_port_closed "$SLURMD_PORT" slurmd
        log "starting slurmd -N $node"
        /usr/sbin/slurmd -N "$node" 9>&- || { tail_logs "$SLURMD_LOG"; die "slurmd failed to start"; }
    fi
    wait_slurm_up "$t0"
    alive "$SLURMCTLD_PIDFILE" slurmctld || { tail_logs "$SLURMCTLD_LOG"; die "slurmctld died"; }
    alive "$SLURMD_PIDFILE" slurmd || { tail_logs "$SLURMD_LOG"; die "slurmd died"; }
    log "slurm up in $(since "$t0") s: node $node $(node_state), partitions $PARTITION (default), $GPU_PARTITION, $SCAVENGER_PARTITION (preemptible) and $URGENT_PARTITION"
}

cancel_all_jobs() {
    local ids i
    ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
    [ -n "${ids// /}" ] || return 0
    log "cancelling jobs: $ids"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    # Job processes outlive slurmd: wait until Slurm has really ended them (KillWait=5).
    for ((i = 0; i < 150; i++)); do
        [ -z "$(squeue -h -t PD,R,CG,S,CF -o %A 2>/dev/null || true)" ] && return 0
        sleep 0.1
    done
    log "warning: jobs still listed after 15 s: $(squeue -h -o '%A %T' 2>/dev/null | tr '\n' ' ')"
}

stop_slurm() {
    if alive "$SLURMCTLD_PIDFILE" slurmctld; then
        cancel_all_jobs
    elif alive "$SLURMD_PIDFILE" slurmd; then
        log "warning: slurmctld is down, cannot cancel jobs; their processes may outlive slurmd"
    fi
    stop_pidfile "$SLURMD_PIDFILE" slurmd 10
    stop_pidfile "$SLURMCTLD_PIDFILE" slurmctld 15
    wait_port_closed "$SLURMD_PORT" slurmd
    wait_port_closed "$SLURMCTLD_PORT" slurmctld
    stop_pidfile "$MUNGE_PIDFILE" munged 5
    rm -f "$PBS_NODEFILE_DIR"/nodefile.*
}

slurm_up() {
    alive "$SLURMCTLD_PIDFILE" slurmctld && alive "$SLURMD_PIDFILE" slurmd || return 1
    case "$(node_state)" in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}

slurm_cpus() { sinfo -h -N -n "$(node_name)" -o %c 2>/dev/null | head -n 1; }

status_slurm() {
    if slurm_up; then
        echo "slurm: up (node $(node_name) $(node_state), CPUs=$(slurm_cpus) advertised, gres $(sinfo -h -N -o %G | head -n 1), partitions: $(sinfo -h -o %P | tr '\n' ' '))"
        return 0
    fi
    echo "slurm: down (slurmctld $(alive "$SLURMCTLD_PIDFILE" slurmctld && echo running || echo stopped), slurmd $(alive "$SLURMD_PIDFILE" slurmd && echo running || echo stopped), munged $(alive "$MUNGE_PIDFILE" munged && echo running || echo stopped), node state '$(node_state)')"
    return 3
}

env_slurm() {
    slurm_up || return 3
    echo "export HPCLAUNCH_TEST_SLURM=1"
    echo "export HPCLAUNCH_TEST_SLURM_PARTITION=$PARTITION"
    echo "export HPCLAUNCH_TEST_SLURM_GPU_PARTITION=$GPU_PARTITION"
    # Only a Slurm started with the preemptible partitions (an older config has none) names them.
    if [ -n "$(sinfo -h -p "$SCAVENGER_PARTITION" -o %P 2>/dev/null)" ]; then
        echo "export HPCLAUNCH_TEST_SLURM_SCAVENGER_PARTITION=$SCAVENGER_PARTITION"
        echo "export HPCLAUNCH_TEST_SLURM_URGENT_PARTITION=$URGENT_PARTITION"
    fi
    echo "# CPUs the node advertises (SlurmdParameters=config_overrides; the machine has $(nproc))."
    echo "# sbatch -c <more than this> is accepted and stays PENDING (Reason=PartitionConfig);"
    echo "# a job that takes them all keeps the next one PENDING (Reason=Resources)."
    echo "export HPCLAUNCH_TEST_SLURM_CPUS=$(slurm_cpus)"
    echo "export HPCLAUNCH_TEST_SLURM_GPUS=$GPUS"
    echo "export HPCLAUNCH_TEST_SLURM_NODE=$(node_name)"
    if command -v qsub >/dev/null; then
        echo "export HPCLAUNCH_TEST_PBS=1"
    fi
}

# -------------------------------------------------------------------------------------------- ssh

SSHD_CONFIG_CHANGED=0

configure_sshd() {
    local tmp
    install -d -m 0755 "$SSH_DIR"
    if [ ! -s "$SSH_HOST_KEY" ]; then
        log "creating host key $SSH_HOST_KEY"
        ssh-keygen -q -t ed25519 -N '' -C hpclaunch-test-host -f "$SSH_HOST_KEY" </dev/null
    fi
    if [ ! -s "$SSH_CLIENT_KEY" ]; then
        log "creating client key $SSH_CLIENT_KEY"
        ssh-keygen -q -t ed25519 -N '' -C hpclaunch-test-client -f "$SSH_CLIENT_KEY" </dev/null
    fi
    chmod 0600 "$SSH_HOST_KEY" "$SSH_CLIENT_KEY"

    tmp=$(mktemp)
    cat "$SSH_CLIENT_KEY.pub" >"$tmp"
    install_if_changed "$SSH_AUTHORIZED_KEYS" "$tmp" 0600 || true

    tmp=$(mktemp)
    local hostkey
    hostkey=$(cut -d' ' -f1,2 "$SSH_HOST_KEY.pub")
    {
        echo "[$SSH_HOST]:$SSH_PORT $hostkey"
        echo "[localhost]:$SSH_PORT $hostkey"
    } >"$tmp"
    install_if_changed "$SSH_KNOWN_HOSTS" "$tmp" 0644 || true

    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# sshd for hpclaunch's integration tests; generated by scripts/services.sh (do not edit here).
Port $SSH_PORT
ListenAddress $SSH_HOST
HostKey $SSH_HOST_KEY
PidFile $SSHD_PIDFILE
AuthorizedKeysFile $SSH_AUTHORIZED_KEYS
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
AllowTcpForwarding yes
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
# Parallel tests open many connections and channels at once.
MaxStartups 64:30:128
MaxSessions 64
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
    if install_if_changed "$SSHD_CONFIG" "$tmp" 0644; then
        log "wrote $SSHD_CONFIG"
        SSHD_CONFIG_CHANGED=1
    fi
}

ssh_check() {
    timeout 15 ssh -F /dev/null -i "$SSH_CLIENT_KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" \
        -o ConnectTimeout=5 -p "$SSH_PORT" "$SSH_USER@$SSH_HOST" true
}

start_sshd() {
    local t0 i
    t0=$(now)
    configure_sshd
    install -d -m 0755 /run/sshd
    /usr/sbin/sshd -t -f "$SSHD_CONFIG" || die "sshd rejects $SSHD_CONFIG"
    if alive "$SSHD_PIDFILE" sshd && ((SSHD_CONFIG_CHANGED)); then
        log "sshd config changed: restarting sshd"
        stop_pidfile "$SSHD_PIDFILE" sshd 5
    fi
    if ! alive "$SSHD_PIDFILE" sshd; then
        wait_port_closed "$SSH_PORT" "sshd"
        log "starting sshd on $SSH_HOST:$SSH_PORT"
        /usr/sbin/sshd -f "$SSHD_CONFIG" -E "$SSHD_LOG" 9>&- || { tail_logs "$SSHD_LOG"; die "sshd failed to start"; }
        for ((i = 0; i < 50; i++)); do
            port_open "$SSH_PORT" && break
            sleep 0.1
        done
    fi
    ssh_check || { tail_logs "$SSHD_LOG"; die "ssh -p $SSH_PORT $SSH_USER@$SSH_HOST true failed"; }
    log "sshd up in $(since "$t0") s: ssh -i $SSH_CLIENT_KEY -o UserKnownHostsFile=$SSH_KNOWN_HOSTS -p $SSH_PORT $SSH_USER@$SSH_HOST"
}

stop_sshd() {
    stop_pidfile "$SSHD_PIDFILE" sshd 5
    wait_port_closed "$SSH_PORT" sshd
}

status_sshd() {
    if alive "$SSHD_PIDFILE" sshd && ssh_check 2>/dev/null; then
        echo "sshd: up ($SSH_USER@$SSH_HOST:$SSH_PORT, key $SSH_CLIENT_KEY)"
        return 0
    fi
    echo "sshd: down (sshd $(alive "$SSHD_PIDFILE" sshd && echo 'running but ssh check fails' || echo stopped))"
    return 3
}

env_sshd() {
    alive "$SSHD_PIDFILE" sshd && port_open "$SSH_PORT" || return 3
    echo "export HPCLAUNCH_TEST_SSH_HOST=$SSH_HOST"
    echo "export HPCLAUNCH_TEST_SSH_PORT=$SSH_PORT"
    echo "export HPCLAUNCH_TEST_SSH_USER=$SSH_USER"
    echo "export HPCLAUNCH_TEST_SSH_KEY=$SSH_CLIENT_KEY"
    echo "export HPCLAUNCH_TEST_SSH_KNOWN_HOSTS=$SSH_KNOWN_HOSTS"
}

# ------------------------------------------------------------------------------------------- jump

JUMP_CONFIG_CHANGED=0

configure_jump() {
    local tmp key
    install -d -m 0755 "$JUMP_DIR"
    id -u "$JUMP_USER" >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$JUMP_USER"
    # No password, but not locked ('!'): with UsePAM no, sshd refuses locked accounts even for keys.
    [ "$(getent shadow "$JUMP_USER" | cut -d: -f2)" = '*' ] || usermod -p '*' "$JUMP_USER"
    for key in bastion_host login_host; do
        [ -s "$JUMP_DIR/${key}_ed25519" ] ||
            ssh-keygen -q -t ed25519 -N '' -C "hpclaunch-test-$key" -f "$JUMP_DIR/${key}_ed25519" </dev/null
    done
    [ -s "$JUMP_CLIENT_KEY" ] ||
        ssh-keygen -q -t ed25519 -N '' -C hpclaunch-test-jump-client -f "$JUMP_CLIENT_KEY" </dev/null
    chmod 0600 "$JUMP_DIR"/*_ed25519 "$JUMP_CLIENT_KEY"
    tmp=$(mktemp)
    cat "$JUMP_CLIENT_KEY.pub" >"$tmp"
    install_if_changed "$JUMP_DIR/authorized_keys" "$tmp" 0644 || true
    tmp=$(mktemp)
    {
        echo "[$JUMP_HOST]:$JUMP_PORT $(cut -d' ' -f1,2 "$JUMP_DIR/bastion_host_ed25519.pub")"
        echo "[$LOGIN_HOST]:$LOGIN_PORT $(cut -d' ' -f1,2 "$JUMP_DIR/login_host_ed25519.pub")"
        echo "[$LOGIN_HOST]:$MFA_PORT $(cut -d' ' -f1,2 "$JUMP_DIR/login_host_ed25519.pub")"
    } >"$tmp"
    install_if_changed "$JUMP_KNOWN_HOSTS" "$tmp" 0644 || true

    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Bastion for hpclaunch's jump-host tests; generated by scripts/services.sh (do not edit here).
# Forwarding only, and only to the login node: $JUMP_USER has no shell.
Port $JUMP_PORT
ListenAddress $JUMP_HOST
HostKey $JUMP_DIR/bastion_host_ed25519
PidFile $BASTION_PIDFILE
AuthorizedKeysFile $JUMP_DIR/authorized_keys
AllowUsers $JUMP_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
PermitOpen $LOGIN_HOST:$LOGIN_PORT $LOGIN_HOST:$MFA_PORT
PermitTTY no
X11Forwarding no
MaxStartups 64:30:128
MaxSessions 64
LogLevel VERBOSE
EOF
    install_if_changed "$BASTION_CONFIG" "$tmp" 0644 && JUMP_CONFIG_CHANGED=1
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# "Login node" for hpclaunch's jump-host tests, run as sshd -i behind scripts/jump/login_gate.py.
HostKey $JUMP_DIR/login_host_ed25519
AuthorizedKeysFile $JUMP_DIR/authorized_keys
AllowUsers $LOGIN_USER
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
X11Forwarding no
MaxSessions 64
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
    install_if_changed "$LOGIN_CONFIG" "$tmp" 0644 && JUMP_CONFIG_CHANGED=1
    configure_mfa
    return 0
}

configure_mfa() {
    local tmp
    [ -s "$MFA_CODE_FILE" ] || { echo 246810 >"$MFA_CODE_FILE"; chmod 0600 "$MFA_CODE_FILE"; }
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
#!/bin/sh
# pam_exec expose_authtok: the answer to the prompt arrives on stdin.
code=\$(head -c 64 | tr -d '\\000\\n')
[ -n "\$code" ] && [ "\$code" = "\$(cat $MFA_CODE_FILE)" ]
EOF
    install_if_changed "$MFA_CHECK" "$tmp" 0755 || true
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# PAM for the MFA login node of hpclaunch's tests (bind-mounted over /etc/pam.d/sshd).
auth     required pam_exec.so expose_authtok quiet $MFA_CHECK
# pam_exec has no credentials to set; without this, pam_setcred fails after a good code.
auth     required pam_permit.so
account  required pam_permit.so
session  required pam_permit.so
password required pam_deny.so
EOF
    install_if_changed "$MFA_PAM" "$tmp" 0644 && JUMP_CONFIG_CHANGED=1
    tmp=$(mktemp)
    sed -e 's/^KbdInteractiveAuthentication no/KbdInteractiveAuthentication yes/' \
        -e 's/^UsePAM no/UsePAM yes/' -e 's/^PermitRootLogin .*/PermitRootLogin yes/' \
        -e 's/^# "Login node"/# MFA "login node"/' "$LOGIN_CONFIG" >"$tmp"
    echo "AuthenticationMethods publickey,keyboard-interactive" >>"$tmp"
    install_if_changed "$MFA_CONFIG" "$tmp" 0644 && JUMP_CONFIG_CHANGED=1
    return 0
}

start_mfa_gate() {
    local i
    alive "$MFA_PIDFILE" python3 && return 0
    if ! unshare -m true 2>/dev/null; then
        log "warning: 'unshare -m' is not allowed here (needs CAP_SYS_ADMIN): no MFA login node"
        return 0
    fi
    log "starting MFA login node gate on $LOGIN_HOST:$MFA_PORT"
    setsid python3 "$LOGIN_GATE" "$LOGIN_HOST" "$MFA_PORT" "$(id -u "$JUMP_USER")" "$MFA_PIDFILE" \
        "$MFA_LOG" -- /usr/bin/unshare -m /bin/sh -c \
        "mount --bind $MFA_PAM /etc/pam.d/sshd && exec /usr/sbin/sshd -i -f $MFA_CONFIG -E $MFA_LOG" \
        </dev/null >>"$MFA_LOG" 2>&1 9>&- &
    for ((i = 0; i < 50; i++)); do
        alive "$MFA_PIDFILE" python3 && return 0
        sleep 0.1
    done
    tail_logs "$MFA_LOG"
    die "the MFA login node gate did not start"
}

jump_ssh() {
    timeout 15 ssh -F /dev/null -i "$JUMP_CLIENT_KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$JUMP_KNOWN_HOSTS" -o ConnectTimeout=5 "$@"
}

# Through the bastion to the login node, as ssh -J does it.
jump_check() {
    jump_ssh -o ProxyCommand="ssh -F /dev/null -i $JUMP_CLIENT_KEY -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$JUMP_KNOWN_HOSTS -p $JUMP_PORT -W %h:%p $JUMP_USER@$JUMP_HOST" \
        -p "$LOGIN_PORT" "$LOGIN_USER@$LOGIN_HOST" true
}

start_jump() {
    local t0 i
    t0=$(now)
    configure_jump
    install -d -m 0755 /run/sshd
    /usr/sbin/sshd -t -f "$BASTION_CONFIG" || die "sshd rejects $BASTION_CONFIG"
    /usr/sbin/sshd -t -f "$LOGIN_CONFIG" || die "sshd rejects $LOGIN_CONFIG"
    if ((JUMP_CONFIG_CHANGED)); then
        stop_pidfile "$BASTION_PIDFILE" sshd 5
        stop_pidfile "$LOGIN_PIDFILE" python3 5
        stop_pidfile "$MFA_PIDFILE" python3 5
    fi
    /usr/sbin/sshd -t -f "$MFA_CONFIG" || die "sshd rejects $MFA_CONFIG"
    if ! alive "$BASTION_PIDFILE" sshd; then
        wait_port_closed "$JUMP_PORT" "bastion sshd"
        log "starting bastion sshd on $JUMP_HOST:$JUMP_PORT"
        /usr/sbin/sshd -f "$BASTION_CONFIG" -E "$BASTION_LOG" 9>&- || { tail_logs "$BASTION_LOG"; die "bastion sshd failed to start"; }
    fi
    if ! alive "$LOGIN_PIDFILE" python3; then
        log "starting login node gate on $LOGIN_HOST:$LOGIN_PORT (admits uid $(id -u "$JUMP_USER") only)"
        setsid python3 "$LOGIN_GATE" "$LOGIN_HOST" "$LOGIN_PORT" "$(id -u "$JUMP_USER")" "$LOGIN_PIDFILE" \
            "$LOGIN_LOG" -- /usr/sbin/sshd -i -f "$LOGIN_CONFIG" -E "$LOGIN_LOG" \
            </dev/null >>"$LOGIN_LOG" 2>&1 9>&- &
        for ((i = 0; i < 50; i++)); do
            alive "$LOGIN_PIDFILE" python3 && break
            sleep 0.1
        done
    fi
    start_mfa_gate
    jump_check || { tail_logs "$BASTION_LOG" "$LOGIN_LOG"; die "ssh through the bastion to the login node failed"; }
    if jump_ssh -p "$LOGIN_PORT" "$LOGIN_USER@$LOGIN_HOST" true 2>/dev/null; then
        die "the login node $LOGIN_HOST:$LOGIN_PORT admits direct connections (it must not)"
    fi
    log "jump up in $(since "$t0") s: ssh -J $JUMP_USER@$JUMP_HOST:$JUMP_PORT -p $LOGIN_PORT $LOGIN_USER@$LOGIN_HOST (key $JUMP_CLIENT_KEY)"
}

stop_jump() {
    stop_pidfile "$MFA_PIDFILE" python3 5
    stop_pidfile "$LOGIN_PIDFILE" python3 5
    stop_pidfile "$BASTION_PIDFILE" sshd 5
}

status_jump() {
    if alive "$BASTION_PIDFILE" sshd && alive "$LOGIN_PIDFILE" python3 && jump_check 2>/dev/null; then
        echo "jump: up (bastion $JUMP_USER@$JUMP_HOST:$JUMP_PORT -> login $LOGIN_USER@$LOGIN_HOST:$LOGIN_PORT, key $JUMP_CLIENT_KEY)"
        return 0
    fi
    echo "jump: down (bastion $(alive "$BASTION_PIDFILE" sshd && echo running || echo stopped), login gate $(alive "$LOGIN_PIDFILE" python3 && echo running || echo stopped))"
    return 3
}

env_jump() {
    alive "$BASTION_PIDFILE" sshd && alive "$LOGIN_PIDFILE" python3 || return 3
    echo "export HPCLAUNCH_TEST_JUMP_HOST=$JUMP_HOST"
    echo "export HPCLAUNCH_TEST_JUMP_PORT=$JUMP_PORT"
    echo "export HPCLAUNCH_TEST_JUMP_USER=$JUMP_USER"
    echo "export HPCLAUNCH_TEST_LOGIN_HOST=$LOGIN_HOST"
    echo "export HPCLAUNCH_TEST_LOGIN_PORT=$LOGIN_PORT"
    echo "export HPCLAUNCH_TEST_LOGIN_USER=$LOGIN_USER"
    echo "export HPCLAUNCH_TEST_JUMP_KEY=$JUMP_CLIENT_KEY"
    echo "export HPCLAUNCH_TEST_JUMP_KNOWN_HOSTS=$JUMP_KNOWN_HOSTS"
    echo "# sshd -i of the login node logs every accepted connection here (tests count them)."
    echo "export HPCLAUNCH_TEST_LOGIN_LOG=$LOGIN_LOG"
    if alive "$MFA_PIDFILE" python3; then
        echo "# The MFA login node: key, then the code in the file at the keyboard-interactive prompt."
        echo "export HPCLAUNCH_TEST_MFA_PORT=$MFA_PORT"
        echo "export HPCLAUNCH_TEST_MFA_CODE_FILE=$MFA_CODE_FILE"
        echo "export HPCLAUNCH_TEST_MFA_LOG=$MFA_LOG"
    fi
}

# ----------------------------------------------------------------------------------------- podman

podman_check() { podman run --rm --network host "$PODMAN_IMAGE" /usr/bin/python3.11 -c 'import hpclaunch.standin' >/dev/null 2>&1; }

start_podman() {
    local t0 conf
    t0=$(now)
    conf=$(mktemp)
    cp "$HERE/podman/containers.conf" "$conf"
    install -d -m 0755 /etc/containers
    install_if_changed /etc/containers/containers.conf "$conf" 0644 || true
    bash "$HERE/podman/build-image.sh" "$PODMAN_IMAGE" || die "building $PODMAN_IMAGE failed"
    podman_check || die "podman cannot run $PODMAN_IMAGE (see /work/shared/reference/containers.md)"
    log "podman up in $(since "$t0") s: image $PODMAN_IMAGE"
}

status_podman() {
    if command -v podman >/dev/null && podman_check; then
        echo "podman: up (image $PODMAN_IMAGE)"
        return 0
    fi
    echo "podman: down (not installed, or $PODMAN_IMAGE missing or not runnable)"
    return 3
}

env_podman() {
    command -v podman >/dev/null && podman image exists "$PODMAN_IMAGE" || return 3
    echo "export HPCLAUNCH_TEST_PODMAN_IMAGE=$PODMAN_IMAGE"
}

# ------------------------------------------------------------------------------------------- main

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

main() {
    local cmd=${1:-} target=${2:-all} rc=0 t0
    [ $# -le 2 ] || usage
    case "$target" in
        slurm | pbs) target=slurm ;;
        sshd | ssh) target=sshd ;;
        jump | podman) ;;
        twonode) exec bash "$HERE/twonode.sh" "$cmd" ;;
        all) ;;
        *) usage ;;
    esac
    local want_slurm=0 want_sshd=0 want_jump=0 want_podman=0
    case "$target" in slurm | all) want_slurm=1 ;; esac
    case "$target" in sshd | all) want_sshd=1 ;; esac
    case "$target" in jump | all) want_jump=1 ;; esac
    case "$target" in podman | all) want_podman=1 ;; esac

    case "$cmd" in
        install | start | restart)
            need_root
            take_lock
            t0=$(now)
            local pkgs=()
            ((want_slurm)) && pkgs+=("${SLURM_PACKAGES[@]}")
            ((want_sshd || want_jump)) && pkgs+=("${SSH_PACKAGES[@]}")
            ((want_podman)) && pkgs+=("${PODMAN_PACKAGES[@]}")
            install_packages "${pkgs[@]}"
            if [ "$cmd" = install ]; then
                ((want_slurm)) && configure_slurm
                ((want_sshd)) && configure_sshd
                ((want_jump)) && configure_jump
                log "install done in $(since "$t0") s"
                return 0
            fi
            if [ "$cmd" = restart ]; then
                ((want_slurm)) && stop_slurm
                ((want_sshd)) && stop_sshd
                ((want_jump)) && stop_jump
            fi
            ((want_slurm)) && start_slurm
            ((want_sshd)) && start_sshd
            ((want_jump)) && start_jump
            ((want_podman)) && start_podman
            if [ "$target" = all ]; then bash "$HERE/twonode.sh" start 9>&-; fi
            log "$cmd $target done in $(since "$t0") s"
            ;;
        stop)
            need_root
            take_lock
            if [ "$target" = all ]; then bash "$HERE/twonode.sh" stop 9>&- || true; fi
            ((want_slurm)) && { command -v squeue >/dev/null && stop_slurm || true; }
            ((want_sshd)) && stop_sshd
            ((want_jump)) && stop_jump
            log "stopped $target"
            ;;
        status)
            ((want_slurm)) && { status_slurm || rc=3; }
            ((want_sshd)) && { status_sshd || rc=3; }
            ((want_jump)) && { status_jump || rc=3; }
            ((want_podman)) && { status_podman || rc=3; }
            if [ "$target" = all ]; then bash "$HERE/twonode.sh" status || rc=3; fi
            return "$rc"
            ;;
        env)
            if ((want_slurm)); then
                env_slurm || {
                    log "slurm is not up: run 'bash scripts/services.sh start slurm'"
                    rc=3
                }
            fi
            if ((want_sshd)); then
                env_sshd || {
                    log "sshd is not up: run 'bash scripts/services.sh start sshd'"
                    rc=3
                }
            fi
            if ((want_jump)); then
                env_jump || {
                    log "jump is not up: run 'bash scripts/services.sh start jump'"
                    rc=3
                }
            fi
            if ((want_podman)); then
                env_podman || {
                    log "podman is not up: run 'bash scripts/services.sh start podman'"
                    rc=3
                }
            fi
            if [ "$target" = all ]; then
                bash "$HERE/twonode.sh" env || {
                    log "twonode is not up: run 'bash scripts/services.sh start twonode'"
                    rc=3
                }
            fi
            return "$rc"
            ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
