#!/usr/bin/env bash
# Applies tuning/sysctl.conf to the running kernel, one key at a time (like `sysctl -p`, but a key
# this kernel does not have is reported and skipped instead of stopping the run), and with
# --install-limits installs tuning/limits.conf as /etc/security/limits.d/wsreactor.conf.
#
# Changes last until reboot; to keep them, install sysctl.conf under /etc/sysctl.d/ (see there).
# Exit status: 0 when every key the kernel has was set, 1 when a write failed or limits could not
# be installed, 2 on a usage error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

limits_target=/etc/security/limits.d/wsreactor.conf

usage() {
  cat <<EOF
usage: $(basename "$0") [--dry-run] [--install-limits] [--conf FILE] [--limits FILE]

Applies the kernel settings in FILE (default: $here/sysctl.conf). Must run as root,
except with --dry-run.

  --dry-run         print what would be set and installed; change nothing
  --install-limits  also install the limits file (default: $here/limits.conf)
                    as $limits_target
  --conf FILE       the sysctl settings to apply
  --limits FILE     the limits.conf-style file to install
EOF
}

dry_run=0
install_limits=0
conf=$here/sysctl.conf
limits=$here/limits.conf
while (($#)); do
  case $1 in
  --dry-run) dry_run=1 ;;
  --install-limits) install_limits=1 ;;
  --conf | --limits)
    (($# >= 2)) || usage_error "$1 needs a file"
    if [[ $1 == --conf ]]; then conf=$2; else limits=$2; fi
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

if ((!dry_run && EUID != 0)); then
  echo "$(basename "$0"): must run as root (or try --dry-run)" >&2
  exit 1
fi
files=("$conf")
((install_limits)) && files+=("$limits")
for f in "${files[@]}"; do
  if [[ ! -r $f ]]; then
    echo "$(basename "$0"): cannot read $f" >&2
    exit 2
  fi
done

read_settings "$conf"
((dry_run)) && echo "dry run: nothing is changed"

changed=0 unchanged=0 missing=0 failed=0
for i in "${!KEYS[@]}"; do
  key=${KEYS[i]}
  want=${VALUES[i]}
  path=$(proc_path "$key")
  if [[ ! -e $path ]]; then
    why="this kernel has no such key"
    [[ $key == net.netfilter.* ]] && why="conntrack is not loaded: nothing is tracked, nothing to do"
    printf '%-32s missing   (%s)\n' "$key" "$why"
    missing=$((missing + 1))
    continue
  fi
  cur=$(current_value "$key" || echo "?")
  if [[ $cur == "$want" ]]; then
    printf '%-32s unchanged %s\n' "$key" "$want"
    unchanged=$((unchanged + 1))
  elif ((dry_run)); then
    printf '%-32s would set %s (now %s)\n' "$key" "$want" "$cur"
    changed=$((changed + 1))
  elif err=$({ printf '%s\n' "$want" >"$path"; } 2>&1); then
    printf '%-32s set       %s (was %s)\n' "$key" "$want" "$cur"
    changed=$((changed + 1))
  else
    printf '%-32s FAILED    %s (still %s): %s\n' "$key" "$want" "$cur" "${err##*: }"
    failed=$((failed + 1))
  fi
done

verb="set"
((dry_run)) && verb="would be set"
echo "$changed $verb, $unchanged unchanged, $missing missing, $failed failed"

if ((install_limits)); then
  need=$(limits_nofile "$limits")
  # A hard nofile above fs.nr_open makes pam_limits fail and can refuse logins: check first.
  nr_open=$(current_value fs.nr_open || echo 0)
  if ((dry_run)); then
    for i in "${!KEYS[@]}"; do
      if [[ ${KEYS[i]} == fs.nr_open && $(num_cmp "${VALUES[i]}" "$nr_open") == 1 ]]; then
        nr_open=${VALUES[i]}
      fi
    done
  fi
  if [[ $(num_cmp "$need" "$nr_open") == 1 ]]; then
    echo "not installing $limits: its nofile $need is above fs.nr_open $nr_open" \
      "(that could lock users out of new logins); raise fs.nr_open first" >&2
    exit 1
  fi
  if ((dry_run)); then
    echo "would install $limits as $limits_target (nofile $need; fs.nr_open $nr_open)"
  else
    install -m 0644 "$limits" "$limits_target"
    echo "installed $limits_target (nofile $need): log in again for it to apply;" \
      "systemd services need LimitNOFILE= instead"
  fi
fi

((failed == 0))
