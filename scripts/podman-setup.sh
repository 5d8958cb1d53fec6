#!/usr/bin/env bash
# Make podman usable on a Debian machine with no container registry and no Docker engine, so the
# image tests can build and run the real image. Idempotent: a second run only checks.
#
#   scripts/podman-setup.sh            # set up, then print the environment to export
#   eval "$(scripts/podman-setup.sh --print-env)"   # set up quietly, export in this shell
#   . /var/tmp/migrate-job-podman/env  # what the first run wrote
#
# Why each piece exists (all checked on this kind of machine):
# - crun (Debian's default OCI runtime for podman) fails on cgroup v1 here: runtime = "runc".
# - podman's default ulimits can exceed the host's hard limits, which fails every container start:
#   pin them to the host's hard limits.
# - storage must be configured before the first podman command on a new graphroot, otherwise
#   every later command waits ~20 s on a storage-driver mismatch; hence CONTAINERS_STORAGE_CONF.
# - no registry is reachable: the base image is made with debootstrap and `podman import`.
set -euo pipefail

ROOT="${MIGRATE_PODMAN_ROOT:-/var/tmp/migrate-job-podman}"
BASE_IMAGE="${MIGRATE_BASE_IMAGE:-localhost/debian-minbase:bookworm}"
SUITE="bookworm"
PRINT_ENV_ONLY=0
[[ "${1:-}" == "--print-env" ]] && PRINT_ENV_ONLY=1

log() { if [[ $PRINT_ENV_ONLY -eq 0 ]]; then echo "podman-setup: $*"; else echo "podman-setup: $*" >&2; fi; }
die() { echo "podman-setup: ERROR: $*" >&2; exit 1; }

install_packages() {
    local missing=()
    for pkg in podman runc debootstrap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "packages missing (${missing[*]}) and not root: install them with apt-get"
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" uidmap fuse-overlayfs slirp4netns >&2
}

# The Debian mirror apt already uses (the only network this machine has besides PyPI and npm).
debian_mirror() {
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && /'"$SUITE"'( |$)/ {print u; exit}' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    fi
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1=="deb" && $3=="'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# Write a file only when its content changes, so reruns leave timestamps alone.
write_if_changed() {
    local path="$1" content="$2"
    if [[ ! -f "$path" ]] || [[ "$(cat "$path")" != "$content" ]]; then
        printf '%s\n' "$content" >"$path"
    fi
}

write_config() {
    mkdir -p "$ROOT/storage" "$ROOT/run" "$ROOT/tmp"
    local nofile nproc
    nofile=$(ulimit -Hn)
    [[ "$nofile" == "unlimited" ]] && nofile=1048576
    nproc=$(cat /proc/sys/kernel/pid_max)
    write_if_changed "$ROOT/containers.conf" "# written by scripts/podman-setup.sh
[containers]
default_ulimits = [\"nofile=${nofile}:${nofile}\", \"nproc=${nproc}:${nproc}\"]
log_driver = \"k8s-file\"

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
tmp_dir = \"$ROOT/tmp\""
    write_if_changed "$ROOT/storage.conf" "# written by scripts/podman-setup.sh
[storage]
driver = \"overlay\"
graphroot = \"$ROOT/storage\"
runroot = \"$ROOT/run\""
    write_if_changed "$ROOT/env" "export CONTAINERS_CONF=$ROOT/containers.conf
export CONTAINERS_STORAGE_CONF=$ROOT/storage.conf
export MIGRATE_PODMAN_BASE_IMAGE=$BASE_IMAGE"
    export CONTAINERS_CONF="$ROOT/containers.conf"
    export CONTAINERS_STORAGE_CONF="$ROOT/storage.conf"
}

build_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        log "base image $BASE_IMAGE present"
        return 0
    fi
    local mirror rootfs
    mirror=$(debian_mirror)
    rootfs="$ROOT/rootfs-$SUITE"
    rm -rf "$rootfs"
    log "debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$ROOT/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $ROOT/debootstrap.log"
    # Drop what only bloats the image: apt lists and caches are refetched by whoever needs them.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import \
        --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE_IMAGE" >&2
    rm -rf "$rootfs"
    log "imported $BASE_IMAGE"
}

install_packages
write_config
podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}' >/dev/null 2>&1 \
    || die "podman info fails with $ROOT/containers.conf: run 'CONTAINERS_CONF=$ROOT/containers.conf CONTAINERS_STORAGE_CONF=$ROOT/storage.conf podman info'"
build_base_image

if [[ $PRINT_ENV_ONLY -eq 1 ]]; then
    cat "$ROOT/env"
else
    log "ready; export this before using podman:"
    cat "$ROOT/env"
fi
