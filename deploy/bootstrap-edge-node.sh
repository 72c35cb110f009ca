#!/usr/bin/env bash
# bootstrap-edge-node.sh - turn a fresh Linux box into an edge minion of a site.
#
#   1. installs salt-minion from the official Salt Project repository
#      (Debian/Ubuntu: apt, RHEL-likes: dnf) and saltext-edge into the
#      minion's own Python with salt-pip (the edge_token grain must be there
#      on the very first start, before the key is accepted and anything can be
#      synced);
#   2. writes the enrollment drop-in /etc/salt/minion.d/edge.conf - the same
#      file the state edge.minion_config manages, rendered by the same library
#      (saltext_edge.minion_config.build_plan) when it is importable, else by a
#      built-in renderer that produces identical YAML - and the enrollment key
#      (or site key, or fleet secret) in /etc/salt/edge/edge.key, mode 0600;
#   3. enables and (re)starts the salt-minion service.
#
# The secret is never taken on the command line (it would show in `ps` and
# shell history): give a file, or the EDGE_ENROLLMENT_KEY / EDGE_SITE_KEY /
# EDGE_SHARED_SECRET environment variable. An enrollment key (salt-run
# edge.enrollment_key; limited uses, expires - docs/enrollment.rst) is the
# default choice; it names its site, so --site may be left out with it.
#
# Usage:
#   bootstrap-edge-node.sh --master salt-a.example.net [--master salt-b.example.net] \
#       (--enrollment-key-file FILE | --site SITE (--site-key-file FILE | --shared-secret-file FILE))
#       [--id MINION_ID] [--master-alive-interval 30] [--no-failover]
#       [--salt-version 3008] [--package SPEC] [--python PATH]
#       [--renderer auto|library|builtin] [--no-install] [--no-start]
#       [--dry-run --root DIR]
#
# --package SPEC: what salt-pip installs (default: saltext-edge from the
# package index). Until a release is published, give a wheel built with
# `./dev dist` (a file path: --package /root/saltext_edge-0.1.0-py3-none-any.whl)
# or a git URL (--package git+https://HOST/OWNER/saltext-edge.git@v0.1.0; the
# node needs git for that).
#
# --dry-run --root DIR: install nothing, start nothing (print those commands),
# and write the files under DIR instead of / (DIR/etc/salt/minion.d/edge.conf,
# DIR/etc/salt/edge/edge.key, DIR/etc/salt/minion_id). The paths *inside* the
# files are the real ones (/etc/salt/edge/edge.key).
#
# Official Salt Project repository commands this script runs (as of 2025,
# https://docs.saltproject.io/salt/install-guide/en/latest/):
#   Debian/Ubuntu:
#     mkdir -p /etc/apt/keyrings
#     curl -fsSL https://packages.broadcom.com/artifactory/api/security/keypair/SaltProjectKey/public \
#       | tee /etc/apt/keyrings/salt-archive-keyring.pgp
#     curl -fsSL https://github.com/saltstack/salt-install-guide/releases/latest/download/salt.sources \
#       | tee /etc/apt/sources.list.d/salt.sources
#     apt-get update && apt-get install -y salt-minion
#   RHEL/Rocky/Alma/Fedora:
#     curl -fsSL https://github.com/saltstack/salt-install-guide/releases/latest/download/salt.repo \
#       | tee /etc/yum.repos.d/salt.repo
#     dnf install -y salt-minion
#   then: salt-pip install saltext-edge   (or the --package file / git URL)

set -euo pipefail

PROG=${0##*/}
SITE=""
MASTERS=()
SITE_KEY_FILE=""
ENROLLMENT_KEY_FILE=""
SHARED_SECRET_FILE=""
MINION_ID=""
ALIVE=30
FAILOVER=1
SALT_VERSION=""
PACKAGE="saltext-edge"
PYTHON=""
RENDERER=auto
INSTALL=1
START=1
DRY_RUN=0
ROOT=/

DROPIN=/etc/salt/minion.d/edge.conf
SECRET_PATH=/etc/salt/edge/edge.key

die() { echo "$PROG: error: $*" >&2; exit 2; }
say() { echo "$PROG: $*" >&2; }
usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" | sed -n '/^Usage:/,/^$/p'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --site) SITE=${2-}; shift 2 ;;
    --master) MASTERS+=("${2-}"); shift 2 ;;
    --site-key-file) SITE_KEY_FILE=${2-}; shift 2 ;;
    --enrollment-key-file) ENROLLMENT_KEY_FILE=${2-}; shift 2 ;;
    --shared-secret-file) SHARED_SECRET_FILE=${2-}; shift 2 ;;
    --id) MINION_ID=${2-}; shift 2 ;;
    --master-alive-interval) ALIVE=${2-}; shift 2 ;;
    --no-failover) FAILOVER=0; shift ;;
    --salt-version) SALT_VERSION=${2-}; shift 2 ;;
    --package) PACKAGE=${2-}; shift 2 ;;
    --python) PYTHON=${2-}; shift 2 ;;
    --renderer) RENDERER=${2-}; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-start) START=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --root) ROOT=${2-}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

# ---------------------------------------------------------------- validation
if [ -n "$SITE" ] || { [ -z "$ENROLLMENT_KEY_FILE" ] && [ -z "${EDGE_ENROLLMENT_KEY-}" ]; }; then
  [[ "$SITE" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--site: 1-64 of letters, digits, '.', '_', '-'"
fi
[ ${#MASTERS[@]} -gt 0 ] || die "give at least one --master HOST[:PORT]"
for m in "${MASTERS[@]}"; do
  [[ "$m" =~ ^(\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?|[A-Za-z0-9._-]+(:[0-9]{1,5})?|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)$ ]] \
    || die "--master '$m' is not HOST or HOST:PORT"
done
[[ "$ALIVE" =~ ^[0-9]+$ ]] && [ "$ALIVE" -ge 1 ] && [ "$ALIVE" -le 86400 ] \
  || die "--master-alive-interval: seconds, 1-86400"
[ "$FAILOVER" = 1 ] || [ ${#MASTERS[@]} -eq 1 ] || die "--no-failover takes exactly one --master"
case "$RENDERER" in auto|library|builtin) ;; *) die "--renderer: auto, library or builtin" ;; esac
[ -z "$MINION_ID" ] || [[ "$MINION_ID" =~ ^[A-Za-z0-9._-]{1,255}$ ]] || die "--id: letters, digits, '.', '_', '-'"
case "$PACKAGE" in
  "") die "--package: give a package name, a wheel/sdist file or a git URL" ;;
  git+*://*|https://*|http://*) ;;
  /*|./*|../*|*.whl|*.tar.gz|*.zip)
    [ -f "$PACKAGE" ] && [ -r "$PACKAGE" ] || die "--package: no readable file $PACKAGE"
    case "$PACKAGE" in /*) ;; *) PACKAGE="$(cd "$(dirname "$PACKAGE")" && pwd)/${PACKAGE##*/}" ;; esac ;;
  *) [[ "$PACKAGE" =~ ^[A-Za-z0-9._-]+([\[\]A-Za-z0-9,._-]*)?([=<>!~]=?[A-Za-z0-9.*+!_-]+)?$ ]] \
       || die "--package: '$PACKAGE' is not a package name, a file or a git URL" ;;
esac

if [ "$DRY_RUN" = 1 ]; then
  [ "$ROOT" != / ] || die "--dry-run needs --root DIR (files are written there, not to /)"
  INSTALL=0
  START=0
fi
ROOT=${ROOT%/}
[ -n "$ROOT" ] || ROOT=""
if [ -n "$ROOT" ]; then mkdir -p "$ROOT"; fi

# the secret: a site key (64 hex) or the fleet secret, never from argv
KIND=""
SECRET=""
SOURCES=0
for f in "$ENROLLMENT_KEY_FILE" "$SITE_KEY_FILE" "$SHARED_SECRET_FILE"; do
  [ -z "$f" ] || SOURCES=$((SOURCES + 1))
done
if [ "$SOURCES" -gt 1 ]; then
  die "give one of --enrollment-key-file, --site-key-file, --shared-secret-file"
elif [ -n "$ENROLLMENT_KEY_FILE" ]; then
  [ -r "$ENROLLMENT_KEY_FILE" ] || die "cannot read --enrollment-key-file"
  KIND=enrollment_key; SECRET=$(tr -d ' \t\r\n' < "$ENROLLMENT_KEY_FILE")
elif [ -n "$SITE_KEY_FILE" ]; then
  [ -r "$SITE_KEY_FILE" ] || die "cannot read --site-key-file"
  KIND=site_key; SECRET=$(tr -d ' \t\r\n' < "$SITE_KEY_FILE")
elif [ -n "$SHARED_SECRET_FILE" ]; then
  [ -r "$SHARED_SECRET_FILE" ] || die "cannot read --shared-secret-file"
  KIND=shared_secret; SECRET=$(head -n 1 "$SHARED_SECRET_FILE" | tr -d '\r\n')
elif [ -n "${EDGE_ENROLLMENT_KEY-}" ]; then
  KIND=enrollment_key; SECRET=$(printf '%s' "$EDGE_ENROLLMENT_KEY" | tr -d ' \t\r\n')
elif [ -n "${EDGE_SITE_KEY-}" ]; then
  KIND=site_key; SECRET=$(printf '%s' "$EDGE_SITE_KEY" | tr -d ' \t\r\n')
elif [ -n "${EDGE_SHARED_SECRET-}" ]; then
  KIND=shared_secret; SECRET=$EDGE_SHARED_SECRET
else
  die "no enrollment key: --enrollment-key-file FILE, --site-key-file FILE, --shared-secret-file FILE, or EDGE_ENROLLMENT_KEY / EDGE_SITE_KEY"
fi
if [ "$KIND" = enrollment_key ]; then
  [[ "$SECRET" =~ ^edge-enroll:v2:([A-Za-z0-9._-]{1,64}):[0-9a-f]{16}:[0-9a-f]{64}$ ]] \
    || die "the enrollment key is not 'edge-enroll:v2:SITE:ID:KEY' (salt-run edge.enrollment_key writes one)"
  KEY_SITE=${BASH_REMATCH[1]}
  [ -z "$SITE" ] || [ "$SITE" = "$KEY_SITE" ] \
    || die "the enrollment key is for site '$KEY_SITE', not --site '$SITE' (leave --site out)"
elif [ "$KIND" = site_key ]; then
  SECRET=$(printf '%s' "$SECRET" | tr 'A-F' 'a-f')
  [[ "$SECRET" =~ ^[0-9a-f]{64}$ ]] || die "the site key is not 64 hexadecimal characters"
else
  [ ${#SECRET} -ge 16 ] || die "the shared secret is too short (at least 16 characters)"
fi

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

# ------------------------------------------------------------------ install
install_minion() {
  if command -v salt-minion >/dev/null 2>&1; then
    say "salt-minion already installed: $(salt-minion --version 2>/dev/null || true)"
  elif command -v apt-get >/dev/null 2>&1; then
    run mkdir -p /etc/apt/keyrings
    run sh -c 'curl -fsSL https://packages.broadcom.com/artifactory/api/security/keypair/SaltProjectKey/public > /etc/apt/keyrings/salt-archive-keyring.pgp'
    run sh -c 'curl -fsSL https://github.com/saltstack/salt-install-guide/releases/latest/download/salt.sources > /etc/apt/sources.list.d/salt.sources'
    if [ -n "$SALT_VERSION" ]; then
      run sh -c "printf 'Package: salt-*\nPin: version $SALT_VERSION.*\nPin-Priority: 1001\n' > /etc/apt/preferences.d/salt-pin-1001"
    fi
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y salt-minion
  elif command -v dnf >/dev/null 2>&1; then
    run sh -c 'curl -fsSL https://github.com/saltstack/salt-install-guide/releases/latest/download/salt.repo > /etc/yum.repos.d/salt.repo'
    if [ -n "$SALT_VERSION" ]; then
      run dnf install -y "salt-minion-$SALT_VERSION*"
    else
      run dnf install -y salt-minion
    fi
  else
    die "no apt-get or dnf: install salt-minion yourself, then rerun with --no-install"
  fi
  # the minion must not start before its enrollment config exists
  run systemctl stop salt-minion || true
  if command -v salt-pip >/dev/null 2>&1 || [ "$DRY_RUN" = 1 ]; then
    run salt-pip install "$PACKAGE"
  else
    die "salt-pip not found (onedir salt-minion 3006+ ships it)"
  fi
}

if [ "$INSTALL" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "installing needs root (or use --no-install / --dry-run --root DIR)"
  install_minion
elif [ "$DRY_RUN" = 1 ]; then
  say "dry run: would install salt-minion from the Salt Project repository and run: salt-pip install $PACKAGE"
fi

# ------------------------------------------------------------------- render
find_python() {
  local c
  for c in "$PYTHON" /opt/saltstack/salt/bin/python3 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import saltext_edge.minion_config' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

render_library() {
  local py=$1 masters_json="" m
  for m in "${MASTERS[@]}"; do masters_json+="${masters_json:+,}\"$m\""; done
  # parameters (and the secret, for validation only) go in on stdin
  printf '{"name": "%s", "masters": [%s], "master_alive_interval": %s, "failover": %s, "site": %s, "%s": "%s", "secret_file": "%s"}' \
    "$DROPIN" "$masters_json" "$ALIVE" "$([ "$FAILOVER" = 1 ] && echo true || echo false)" \
    "$([ -n "$SITE" ] && printf '"%s"' "$SITE" || echo null)" "$KIND" "$(printf '%s' "$SECRET" | sed 's/\\/\\\\/g; s/"/\\"/g')" "$SECRET_PATH" \
  | "$py" -c '
import json, sys
from saltext_edge import minion_config as mc
try:
    plan = mc.build_plan(**json.load(sys.stdin))
except mc.MinionConfigError as err:
    sys.exit("invalid: %s" % err)
sys.stdout.write(plan["content"])
'
}

yaml_scalar() {
  # quote like PyYAML's safe dumper would: values that YAML 1.1 reads as
  # bool/null/int/float, or that start with a YAML indicator
  local v=$1
  if [[ "$v" =~ ^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|null|Null|NULL|~)$ ]] \
     || [[ "$v" =~ ^[-+]?(0|[1-9][0-9_]*)$ ]] \
     || [[ "$v" =~ ^[-+]?0[0-7_]+$ ]] || [[ "$v" =~ ^[-+]?0x[0-9a-fA-F_]+$ ]] \
     || [[ "$v" =~ ^[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?$ ]] \
     || [[ "$v" =~ ^[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$ ]] \
     || [[ "$v" =~ ^[-+]?\.(inf|Inf|INF)$ ]] || [[ "$v" =~ ^\.(nan|NaN|NAN)$ ]] \
     || [[ "$v" =~ ^[][{}#\&*!\|\>\'\"%@\`,?:-] ]]; then
    printf "'%s'" "${v//\'/\'\'}"
  else
    printf '%s' "$v"
  fi
}

render_builtin() {
  # mirrors saltext_edge.minion_config.build_plan with nat_keepalive=True
  local m
  echo "# Managed by Salt: state edge.minion_config (saltext-edge)."
  echo "# Manual changes are overwritten on the next state run."
  if [ "$FAILOVER" = 1 ]; then
    echo "master:"
    for m in "${MASTERS[@]}"; do echo "  - $(yaml_scalar "$m")"; done
    echo "master_type: failover"
  else
    echo "master: $(yaml_scalar "${MASTERS[0]}")"
    echo "master_type: str"
  fi
  echo "master_alive_interval: $ALIVE"
  cat <<'EOF'
tcp_keepalive: true
tcp_keepalive_idle: 20
tcp_keepalive_cnt: 4
tcp_keepalive_intvl: 5
ping_interval: 5
random_reauth_delay: 60
recon_default: 1000
recon_max: 60000
recon_randomize: true
EOF
  if [ "$FAILOVER" = 1 ]; then echo "retry_dns: 0"; else echo "retry_dns: 30"; fi
  cat <<'EOF'
beacons:
  edge_heartbeat:
    - period: 60
    - jitter: 0.1
EOF
  echo "autosign_grains:"
  echo "  - edge_token"
  echo "rejected_retry: true"
  echo "acceptance_wait_time: 0.25"
  echo "acceptance_wait_time_max: 10"
  echo "edge:"
  if [ -n "$SITE" ]; then echo "  site: $(yaml_scalar "$SITE")"; fi
  echo "  ${KIND}_file: $SECRET_PATH"
}

CONTENT=""
case "$RENDERER" in
  library)
    PY=$(find_python) || die "--renderer library: no Python here imports saltext_edge (salt-pip install saltext-edge)"
    CONTENT=$(render_library "$PY"; echo x) ;;
  builtin)
    CONTENT=$(render_builtin; echo x) ;;
  auto)
    if PY=$(find_python); then
      say "rendering with saltext_edge.minion_config from $PY"
      CONTENT=$(render_library "$PY"; echo x)
    else
      say "saltext_edge not importable here: using the built-in renderer (same YAML)"
      CONTENT=$(render_builtin; echo x)
    fi ;;
esac
CONTENT=${CONTENT%x}
[ -n "$CONTENT" ] || die "rendering the drop-in failed"

# -------------------------------------------------------------------- write
write_file() { # path mode content
  local path=$1 mode=$2 dir tmp
  dir=$(dirname "$path")
  tmp=$(mktemp "$dir/.${path##*/}.XXXXXX")
  chmod "$mode" "$tmp"
  printf '%s' "$3" > "$tmp"
  mv -f "$tmp" "$path"
}

umask 077
mkdir -p "$ROOT/etc/salt/minion.d" "$ROOT$(dirname "$SECRET_PATH")"
chmod 0755 "$ROOT/etc/salt" "$ROOT/etc/salt/minion.d" 2>/dev/null || true
chmod 0700 "$ROOT$(dirname "$SECRET_PATH")"
write_file "$ROOT$SECRET_PATH" 0600 "$SECRET"
write_file "$ROOT$DROPIN" 0644 "$CONTENT"
if [ -n "$MINION_ID" ]; then
  write_file "$ROOT/etc/salt/minion_id" 0644 "$MINION_ID"
fi
say "wrote $ROOT$DROPIN and $ROOT$SECRET_PATH (0600)"

# -------------------------------------------------------------------- start
if [ "$START" = 1 ]; then
  run systemctl enable salt-minion
  run systemctl restart salt-minion
  say "salt-minion started; with auto_admit on the master it is accepted within ~10 s"
elif [ "$DRY_RUN" = 1 ]; then
  echo "+ systemctl enable salt-minion"
  echo "+ systemctl restart salt-minion"
fi
