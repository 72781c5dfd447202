# Source me (bash): settings this machine's podman needs that its defaults lack, as a
# containers.conf named by CONTAINERS_CONF; on a machine where podman's defaults work, nothing.
#
# Podman (rootful) asks the runtime for nofile=1048576 and nproc=4194304 in every container;
# where the host's hard limits are lower (sandboxes, some CI runners) every start fails with
# "setrlimit RLIMIT_NOFILE: Operation not permitted", so the containers get the host's limits.
# crun refuses hybrid cgroups (v1 controllers plus a v2 mount, "cgroups in hybrid mode not
# supported"); runc runs there, so it is chosen when the machine has both.
# Override with your own file: CONTAINERS_CONF=/path/containers.conf.

medfed_engine_env() {
    [[ -n "${CONTAINERS_CONF:-}" ]] && return 0
    local cache=${MEDFED_DEPLOY_CACHE:-/var/tmp/medfed-deploy}
    local nofile nproc pid_max runtime="" settings=()
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
    [[ "$nproc" == unlimited || "$nproc" -gt "$pid_max" ]] && nproc=$pid_max
    if [[ "$nofile" != unlimited && "$nofile" -lt 1048576 ]] || [[ "$nproc" -lt 4194304 ]]; then
        settings+=("default_ulimits = [\"nofile=${nofile/unlimited/1048576}:${nofile/unlimited/1048576}\", \"nproc=$nproc:$nproc\"]")
    fi
    if [[ -d /sys/fs/cgroup/unified && -d /sys/fs/cgroup/memory ]] && command -v runc >/dev/null; then
        runtime='runtime = "runc"'
    fi
    [[ ${#settings[@]} -eq 0 && -z "$runtime" ]] && return 0
    mkdir -p "$cache"
    {
        echo "# written by deploy/engine.sh for this machine"
        echo "[containers]"
        printf '%s\n' "${settings[@]}"
        echo "[engine]"
        echo "$runtime"
        echo 'cgroup_manager = "cgroupfs"'
        echo 'events_logger = "file"'
    } > "$cache/containers.conf"
    export CONTAINERS_CONF="$cache/containers.conf"
}
medfed_engine_env
