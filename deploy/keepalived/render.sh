#!/bin/sh
# Renders keepalived.conf.in for one node: every @NAME@ is replaced by the NAME=value argument;
# a name left without a value is an error (nothing half-configured reaches keepalived).
# Defaults: SCRIPT_USER=root CHECK_INTERVAL=2 CHECK_FALL=2 CHECK_RISE=2
#           CHECK="/etc/keepalived/check_sipedge.sh" NOTIFY="/etc/keepalived/notify_sipedge.sh"
# Usage: render.sh [TEMPLATE=path] NAME=value ... > keepalived.conf
set -eu
dir=$(dirname "$0")
template="$dir/keepalived.conf.in"
SCRIPT_USER=root CHECK_INTERVAL=2 CHECK_FALL=2 CHECK_RISE=2
CHECK=/etc/keepalived/check_sipedge.sh NOTIFY=/etc/keepalived/notify_sipedge.sh
script=""
for kv in "$@"; do
  case "$kv" in
    TEMPLATE=*) template=${kv#TEMPLATE=} ;;
    *=*)
      name=${kv%%=*}; value=${kv#*=}
      case "$name" in *[!A-Z0-9_]*|'') echo "render.sh: bad name: $name" >&2; exit 2 ;; esac
      # escape for sed: backslash, the delimiter |, and &
      esc=$(printf '%s' "$value" | sed -e 's/[\\|&]/\\&/g')
      script="$script
s|@$name@|$esc|g" ;;
    *) echo "render.sh: expected NAME=value, got: $kv" >&2; exit 2 ;;
  esac
done
for d in SCRIPT_USER CHECK_INTERVAL CHECK_FALL CHECK_RISE CHECK NOTIFY; do
  eval "v=\$$d"
  esc=$(printf '%s' "$v" | sed -e 's/[\\|&]/\\&/g')
  script="$script
s|@$d@|$esc|g"
done
out=$(sed -e "$script" "$template")
missing=$(printf '%s\n' "$out" | grep -o '@[A-Z0-9_]*@' | sort -u | tr '\n' ' ' || true)
if [ -n "$missing" ]; then echo "render.sh: no value for $missing" >&2; exit 2; fi
printf '%s\n' "$out"
