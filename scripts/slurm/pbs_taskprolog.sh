#!/bin/bash
# Slurm TaskProlog for hpclaunch's test cluster: makes jobs submitted through slurm-wlm-torque's
# `qsub` look PBS-shaped. slurmstepd runs it as the job's user before each task, with the task's
# environment, and applies every "export NAME=value" line it prints to that task.
#
# Which jobs get PBS_* variables (real Slurm jobs have none, and hpclaunch code that looks for
# PBS_NODEFILE must not be fooled on the Slurm path):
#   - HPCLAUNCH_PBS_ENV=1 in the submitting environment: always; HPCLAUNCH_PBS_ENV=0: never;
#   - otherwise a batch job whose script has a "#PBS" line, or whose stdout file is qsub's
#     default "<name>.o<jobid>" (qsub always passes -o; `qsub -o path` without #PBS lines is missed).
# Installed to /etc/slurm/pbs_taskprolog.sh by scripts/services.sh. Keep it quiet and fast: anything
# it prints that is not an export/unset/print line is ignored, and a failure must not fail the job.

jobid=${SLURM_JOB_ID:-}
[ -n "$jobid" ] || exit 0
# Steps inside a PBS-shaped job inherit the batch script's variables already.
[ "${PBS_JOBID:-}" = "$jobid" ] && exit 0

looks_like_pbs() {
    case "${HPCLAUNCH_PBS_ENV:-}" in
        1) return 0 ;;
        0) return 1 ;;
    esac
    # Only batch scripts: srun/salloc steps are not qsub jobs.
    [ "${SLURM_STEP_ID:-}" = "4294967294" ] || [ "${SLURM_STEPID:-}" = "4294967294" ] \
        || [ -z "${SLURM_STEP_ID:-}${SLURM_STEPID:-}" ] || return 1
    local script
    for script in /var/lib/slurm/slurmd/job"$(printf '%05d' "$jobid")"/slurm_script \
                  /var/lib/slurm/slurmd/job"$jobid"/slurm_script; do
        if [ -r "$script" ] && grep -q '^#PBS' "$script" 2>/dev/null; then
            return 0
        fi
    done
    local stdout
    stdout=$(scontrol show job -o "$jobid" 2>/dev/null | sed -n 's/.* StdOut=\([^ ]*\).*/\1/p')
    case "$stdout" in
        *.o"$jobid") return 0 ;;
    esac
    return 1
}

looks_like_pbs || exit 0

# "2(x3),1" -> one count per node, in `scontrol show hostnames` order.
expand_counts() {
    local item n rep
    local IFS=,
    for item in $1; do
        if [[ $item =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
            n=${BASH_REMATCH[1]}
            for ((rep = 0; rep < BASH_REMATCH[2]; rep++)); do echo "$n"; done
        elif [[ $item =~ ^[0-9]+$ ]]; then
            echo "$item"
        fi
    done
}

nodefile_dir=/tmp/hpclaunch-pbs
mkdir -p "$nodefile_dir" 2>/dev/null
nodefile=$nodefile_dir/nodefile.$jobid
mapfile -t hosts < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname -s)}" 2>/dev/null)
[ ${#hosts[@]} -gt 0 ] || hosts=("$(hostname -s)")
mapfile -t counts < <(expand_counts "${SLURM_TASKS_PER_NODE:-${SLURM_JOB_CPUS_PER_NODE:-1}}")
np=0
: >"$nodefile" 2>/dev/null || exit 0
for i in "${!hosts[@]}"; do
    n=${counts[$i]:-${counts[0]:-1}}
    for ((k = 0; k < n; k++)); do echo "${hosts[$i]}" >>"$nodefile"; done
    np=$((np + n))
done

echo "export PBS_JOBID=$jobid"
echo "export PBS_JOBNAME=${SLURM_JOB_NAME:-}"
echo "export PBS_O_WORKDIR=${SLURM_SUBMIT_DIR:-$PWD}"
echo "export PBS_O_HOST=${SLURM_SUBMIT_HOST:-}"
echo "export PBS_NODEFILE=$nodefile"
echo "export PBS_NP=$np"
echo "export PBS_NUM_NODES=${#hosts[@]}"
echo "export PBS_NUM_PPN=${counts[0]:-1}"
echo "export PBS_QUEUE=${SLURM_JOB_PARTITION:-}"
echo "export PBS_ENVIRONMENT=PBS_BATCH"
[ -n "${SLURM_ARRAY_TASK_ID:-}" ] && echo "export PBS_ARRAYID=$SLURM_ARRAY_TASK_ID"
exit 0
