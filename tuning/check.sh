#!/usr/bin/env bash
# Compares the running kernel with tuning/sysctl.conf and the open-file limits with
# tuning/limits.conf. Needs no root and changes nothing.
#
# For each setting it prints the wanted value, the current one and a verdict:
#   OK       as wanted, or better (a higher ceiling, a smaller buffer default)
#   LOW      a ceiling below what millions of connections need
#   HIGH     a value wanted small (a buffer default, a timeout) is larger
#   DIFF     a switch set otherwise
#   MISSING  the kernel has no such key (for net.netfilter.*: conntrack is not loaded, which is fine)
# Exits 0, or with --strict 1 when anything is LOW, HIGH, DIFF or MISSING (conntrack aside).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
usage: $(basename "$0") [--strict] [--pid PID] [--conf FILE] [--limits FILE]

  --strict      exit 1 if any setting or limit falls short
  --pid PID     also check the open-file limit of a running process (the server)
  --conf FILE   the wanted kernel settings (default: $here/sysctl.conf)
  --limits FILE the wanted limits (default: $here/limits.conf)
EOF
}

strict=0
pid=
conf=$here/sysctl.conf
limits=$here/limits.conf
while (($#)); do
  case $1 in
  --strict) strict=1 ;;
  --pid | --conf | --limits)
    (($# >= 2)) || usage_error "$1 needs a value"
    case $1 in
    --pid) pid=$2 ;;
    --conf) conf=$2 ;;
    --limits) limits=$2 ;;
    esac
    shift
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) usage_error "unknown option: $1" ;;
  esac
  shift
done

# How a current value compares with the wanted one, field by field: ge (at least: a ceiling),
# le (at most: a size or a timeout wanted small), eq (exactly: a switch), range (a "low high"
# pair that must cover the wanted one). When a key has fewer modes than fields, the last mode
# goes on; keys not listed are ge.
declare -A MODE=(
  [net.ipv4.ip_local_port_range]=range
  [net.ipv4.tcp_rmem]="le le ge"
  [net.ipv4.tcp_wmem]="le le ge"
  [net.core.rmem_default]=le
  [net.core.wmem_default]=le
  [net.ipv4.tcp_fin_timeout]=le
  [net.ipv4.tcp_tw_reuse]=eq
  [net.ipv4.tcp_syncookies]=eq
  [net.ipv4.tcp_moderate_rcvbuf]=eq
)

# verdict MODES WANT CURRENT: prints OK, LOW, HIGH or DIFF. The mode `range` (a "low high" pair)
# wants the current range to cover the wanted one; a narrower one is LOW.
verdict() {
  local -a modes wanted current
  read -ra modes <<<"$1"
  read -ra wanted <<<"$2"
  read -ra current <<<"$3"
  local narrow=
  if [[ ${modes[*]} == range ]]; then
    modes=(le ge)
    narrow=LOW
  fi
  if ((${#wanted[@]} != ${#current[@]})); then
    echo DIFF
    return
  fi
  local i mode cmp
  for i in "${!wanted[@]}"; do
    mode=${modes[i]:-${modes[-1]}}
    if [[ ! ${wanted[i]} =~ ^[0-9]+$ || ! ${current[i]} =~ ^[0-9]+$ ]]; then
      if [[ ${wanted[i]} != "${current[i]}" ]]; then
        echo DIFF
        return
      fi
      continue
    fi
    cmp=$(num_cmp "${current[i]}" "${wanted[i]}")
    case $mode:$cmp in
    ge:-1)
      echo LOW
      return
      ;;
    le:1)
      echo "${narrow:-HIGH}"
      return
      ;;
    eq:-1 | eq:1)
      echo DIFF
      return
      ;;
    esac
  done
  echo OK
}

row() {
  printf '%-32s %-24s %-24s %s\n' "$@"
}

short=0
read_settings "$conf"
row SETTING WANTED CURRENT STATUS
for i in "${!KEYS[@]}"; do
  key=${KEYS[i]}
  want=${VALUES[i]}
  if cur=$(current_value "$key"); then
    status=$(verdict "${MODE[$key]:-ge}" "$want" "$cur")
  else
    cur=-
    status=MISSING
  fi
  row "$key" "$want" "$cur" "$status"
  if [[ $status != OK && ! ($status == MISSING && $key == net.netfilter.*) ]]; then
    short=$((short + 1))
  fi
done

# Open-file limits: this shell's (what a program started from it gets), and the server's.
want_files=$(limits_nofile "$limits")
check_limit() {
  local what=$1 value=$2 status=OK
  if [[ $value != unlimited && $(num_cmp "$value" "$want_files") == -1 ]]; then
    status=LOW
    short=$((short + 1))
  fi
  row "$what" "$want_files" "$value" "$status"
}
echo
row LIMIT WANTED CURRENT STATUS
check_limit "nofile soft (ulimit -Sn)" "$(ulimit -Sn)"
check_limit "nofile hard (ulimit -Hn)" "$(ulimit -Hn)"
if [[ -n $pid ]]; then
  if read -r _ _ _ soft hard _ < <(grep '^Max open files' "/proc/$pid/limits" 2>/dev/null); then
    check_limit "nofile soft (pid $pid)" "$soft"
    check_limit "nofile hard (pid $pid)" "$hard"
  else
    row "nofile (pid $pid)" "$want_files" - MISSING
    short=$((short + 1))
  fi
fi

# What the kernel holds now, for reference.
echo
if [[ -r /proc/net/sockstat ]]; then
  grep -E '^(sockets|TCP):' /proc/net/sockstat
fi
if tracked=$(current_value net.netfilter.nf_conntrack_count); then
  echo "conntrack: $tracked connections tracked"
fi

echo
if ((short == 0)); then
  echo "all settings as wanted"
else
  echo "$short setting(s) or limit(s) fall short of $(basename "$conf") / $(basename "$limits")"
fi
if ((strict && short > 0)); then
  exit 1
fi
exit 0
