#!/usr/bin/env bash
# Install or upgrade vsa on a host, draining its runs first; they resume on the new version.
#
#   scripts/deploy.sh [--dry-run] [--wheel] [--name NAME] [--shm-size SIZE] HOST TARGET
#
# HOST: an ssh destination (user@host); `localhost` runs here, without ssh.
# TARGET: x86_64 | jetson.
# With Docker (the default): copies dist/vsa-<version>-<target>.tar.gz (scripts/build_image.sh)
# to HOST, `docker load`s it, then `vsa drain` in the running container (sources stopped, files
# closed, runs kept active), `docker stop` (its SIGTERM drains too, then Ray stops), and starts
# the new image with the same volumes: its controller resumes the runs from /var/lib/vsa.
# --wheel, for a host without Docker: builds the wheel here, installs it into a new venv
# /opt/vsa/<version> with images/install.sh (on a Jetson the venv sees the system's NVIDIA
# torch), installs images/systemd/vsa.service, then `systemctl stop vsa` (SIGTERM: vsa serve
# drains), points /opt/vsa/current at the new venv and starts vsa again.
# Both ways wait until `vsa status` answers. HOST's user is root or has passwordless sudo.
#   --name NAME     the container's name (default vsa)
#   --shm-size SIZE the container's /dev/shm (default 8g on x86_64, 4g on a Jetson)
#   --dry-run       print what would run here and on HOST, run nothing (no ssh, no Docker)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/deploy.sh [--dry-run] [--wheel] [--name NAME] [--shm-size SIZE] HOST TARGET" >&2
  echo "  HOST: user@host for ssh, or localhost; TARGET: x86_64 | jetson" >&2
  exit 2
}
die() {
  echo "deploy.sh: $*" >&2
  exit 1
}
show() { # a command as one line a shell reads back
  printf '%q ' "$@" | sed 's/ $//'
  echo
}

dry_run=0
wheel=0
name=vsa
shm_size=""
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --wheel) wheel=1 ;;
    --name | --shm-size)
      [ $# -ge 2 ] || usage
      if [ "$1" = --name ]; then name=$2; else shm_size=$2; fi
      shift
      ;;
    -h | --help) usage ;;
    -*)
      echo "deploy.sh: unknown option $1" >&2
      usage
      ;;
    *) positional+=("$1") ;;
  esac
  shift
done
[ ${#positional[@]} -eq 2 ] || {
  echo "deploy.sh: HOST and TARGET are needed" >&2
  usage
}
host=${positional[0]}
target=${positional[1]}
case "$target" in
  x86_64)
    gpu_flag="--gpus all"
    shm_size=${shm_size:-8g}
    ;;
  jetson)
    gpu_flag="--runtime nvidia"
    shm_size=${shm_size:-4g}
    ;;
  *)
    echo "deploy.sh: unknown TARGET '$target' (x86_64 or jetson)" >&2
    usage
    ;;
esac
[[ "$host" =~ ^[A-Za-z0-9_.@:-]+$ && "$host" != -* ]] || die "not an ssh destination: '$host'"
[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "not a container name: '$name'"
[[ "$shm_size" =~ ^[0-9]+[bkmg]?$ ]] || die "not a size: '$shm_size' (e.g. 8g)"

version=$(awk -F'"' '/^\[/ { section = $0 } section == "[project]" && /^version *=/ { print $2; exit }' pyproject.toml)
[[ "$version" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]] || die "no usable [project] version in pyproject.toml: '$version'"
local_host=0
case "$host" in localhost | 127.0.0.1 | ::1) local_host=1 ;; esac

# What runs on HOST: root, or passwordless sudo (-n: an error instead of a password prompt).
# Its files wait in $1: a private directory `mktemp -d` made on HOST for this deploy (mode
# 0700, a random name), never a predictable /tmp name another user of HOST could create
# first or plant a link at; it is removed when the script ends, however it ends.
# shellcheck disable=SC2016 # expanded on HOST, not here
prologue='set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
stage=$1
trap "rm -rf -- \"$stage\"" EXIT'

if [ "$wheel" = 0 ]; then
  tag="vsa:$version-$target"
  tarball="dist/vsa-$version-$target.tar.gz"
  files=("$tarball")
  remote="$prologue
\$SUDO docker load --input \"\$stage/vsa-$version-$target.tar.gz\"
rm -rf \"\$stage\"
# the volumes, owned by the image's user (uid 10001)
\$SUDO install -d -o 10001 -g 10001 -m 0700 /var/lib/vsa
\$SUDO install -d -o 10001 -g 10001 -m 0755 /data/out
if \$SUDO docker container inspect $name >/dev/null 2>&1; then
  echo 'deploy: draining the runs of the running $name (they resume on the new image)'
  \$SUDO docker exec $name vsa drain || echo 'deploy: vsa drain failed; the SIGTERM of docker stop drains too' >&2
  \$SUDO docker stop --time 120 $name
  \$SUDO docker rm $name
fi
# the settings, and the run files (read-only) for \`docker exec $name vsa submit /etc/vsa/runs/...\`
extra=()
[ ! -f /etc/vsa/vsa.env ] || extra+=(--env-file /etc/vsa/vsa.env)
[ ! -d /etc/vsa/runs ] || extra+=(--volume /etc/vsa/runs:/etc/vsa/runs:ro)
\$SUDO docker run --detach --name $name --restart unless-stopped --network host \\
  $gpu_flag --shm-size $shm_size --stop-timeout 120 \${extra[@]+\"\${extra[@]}\"} \\
  --volume /var/lib/vsa:/var/lib/vsa --volume /data/out:/data/out $tag
echo 'deploy: waiting for vsa status to answer'
for _ in \$(seq 150); do
  if \$SUDO docker exec $name vsa status --json >/dev/null 2>&1; then
    echo 'deploy: $tag is up on $name; its runs resume'
    exit 0
  fi
  if [ \"\$(\$SUDO docker inspect --format '{{.State.Running}}' $name)\" != true ]; then
    \$SUDO docker logs --tail 50 $name >&2
    echo 'deploy: $name exited' >&2
    exit 1
  fi
  sleep 2
done
\$SUDO docker logs --tail 50 $name >&2
echo 'deploy: vsa status did not answer within 300 s' >&2
exit 1"
else
  whl="vsa-$version-py3-none-any.whl"
  files=("dist/$whl" images/install.sh images/constraints.txt images/no-deps.txt images/systemd/vsa.service images/systemd/vsa.env)
  venv="/opt/vsa/$version-\$(date +%Y%m%d%H%M%S)"
  if [ "$target" = jetson ]; then
    # NVIDIA's torch is installed system-wide on a Jetson: the venv sees it and keeps it
    venv_cmd="python3 -m venv --system-site-packages \"\$venv\""
    install_flags="--require-torch"
  else
    venv_cmd="python3 -m venv \"\$venv\""
    install_flags=""
  fi
  remote="$prologue
venv=$venv
id vsa >/dev/null 2>&1 || \$SUDO useradd --system --user-group --home-dir /var/lib/vsa --shell /usr/sbin/nologin vsa
\$SUDO install -d -o vsa -g vsa -m 0755 /data/out
\$SUDO $venv_cmd
\$SUDO env PYTHON=\"\$venv/bin/python\" bash \"\$stage/install.sh\" $install_flags \"\$stage/$whl\"
\$SUDO install -m 0644 \"\$stage/vsa.service\" /etc/systemd/system/vsa.service
[ -f /etc/vsa/vsa.env ] || \$SUDO install -D -m 0640 \"\$stage/vsa.env\" /etc/vsa/vsa.env
rm -rf \"\$stage\"
\$SUDO systemctl daemon-reload
if systemctl is-active --quiet vsa; then
  echo 'deploy: stopping vsa (SIGTERM: vsa serve drains the runs; they resume on the new version)'
  \$SUDO systemctl stop vsa
fi
\$SUDO ln -sfn \"\$venv\" /opt/vsa/current
\$SUDO systemctl enable vsa
\$SUDO systemctl start vsa
as_vsa=\"runuser -u vsa --\"; [ -z \"\$SUDO\" ] || as_vsa=\"sudo -n -u vsa\"
echo 'deploy: waiting for vsa status to answer'
for _ in \$(seq 150); do
  if \$as_vsa /opt/vsa/current/bin/vsa status --json >/dev/null 2>&1; then
    echo \"deploy: vsa $version is up from \$venv; its runs resume\"
    exit 0
  fi
  if ! systemctl is-active --quiet vsa; then
    \$SUDO journalctl -u vsa -n 50 --no-pager >&2
    echo 'deploy: vsa is not running' >&2
    exit 1
  fi
  sleep 2
done
\$SUDO journalctl -u vsa -n 50 --no-pager >&2
echo 'deploy: vsa status did not answer within 300 s' >&2
exit 1"
fi

# Here: build the wheel, check the files, copy them to HOST, run the script there.
if [ "$wheel" = 1 ]; then
  build=(python3 -m pip wheel --no-deps --wheel-dir dist .)
  show "${build[@]}"
  [ "$dry_run" = 1 ] || "${build[@]}" >/dev/null || die "building the wheel failed"
fi
if [ "$dry_run" = 0 ]; then
  for file in "${files[@]}"; do
    [ -f "$file" ] || die "$file is missing$([ "$wheel" = 1 ] || echo "; build it first: scripts/build_image.sh $target")"
  done
fi
# The staging directory: made by mktemp -d on HOST (its path is known only then), the files
# copied into it, its path given to the script there as $1.
make_stage=(mktemp -d /tmp/vsa-deploy.XXXXXXXXXX)
if [ "$local_host" = 1 ]; then
  copy=(cp --)
  dest=""
  execute=(bash -s --)
else
  ssh_opts=(-o BatchMode=yes -o ConnectTimeout=15)
  make_stage=(ssh "${ssh_opts[@]}" "$host" "${make_stage[@]}")
  copy=(scp "${ssh_opts[@]}")
  dest="$host:"
  execute=(ssh "${ssh_opts[@]}" "$host" bash -s --)
fi

# Parsed whole before it runs, without stdin: nothing on HOST reads the rest of the script.
remote="{
$remote
} </dev/null"

if [ "$dry_run" = 1 ]; then
  # shellcheck disable=SC2016 # $stage: shown as a shell would run it
  echo "stage=\$($(show "${make_stage[@]}"))"
  echo "$(show "${copy[@]}" "${files[@]}") \"$dest\$stage/\""
  echo "$(show "${execute[@]}") \"\$stage\" <<'EOF'"
  echo "$remote"
  echo "EOF"
  exit 0
fi
stage=$("${make_stage[@]}") || die "making a staging directory on $host failed (mktemp -d)"
[[ "$stage" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "mktemp -d on $host gave no usable path: '$stage'"
if ! "${copy[@]}" "${files[@]}" "$dest$stage/"; then
  if [ "$local_host" = 1 ]; then rm -rf -- "$stage"; else
    # shellcheck disable=SC2029 # the path mktemp made there, checked above
    ssh "${ssh_opts[@]}" "$host" rm -rf -- "$stage" || true
  fi
  die "copying to $host failed"
fi
"${execute[@]}" "$stage" <<<"$remote" || die "the deploy on $host failed (its output is above)"
