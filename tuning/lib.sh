# shellcheck shell=bash
# Helpers shared by apply.sh and check.sh (sourced, not run): reading tuning/sysctl.conf and
# tuning/limits.conf, and reading the kernel's current values.

# read_settings FILE: fills the arrays KEYS and VALUES from the `key = value` lines of FILE
# (comments and blank lines skipped, runs of blanks inside a value squeezed to one space).
read_settings() {
  KEYS=()
  VALUES=()
  local line value
  local -a fields
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    [[ $line =~ ^[[:space:]]*([A-Za-z0-9_./-]+)[[:space:]]*=[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]] ||
      continue
    KEYS+=("${BASH_REMATCH[1]}")
    value=${BASH_REMATCH[2]}
    read -ra fields <<<"$value"
    VALUES+=("${fields[*]}")
  done <"$1"
}

# usage_error MESSAGE: says what is wrong with the command line, shows the calling script's
# `usage`, and exits 2.
usage_error() {
  echo "$(basename "$0"): $1" >&2
  usage >&2
  exit 2
}

# proc_path KEY: the file under /proc/sys behind a sysctl key.
proc_path() {
  printf '/proc/sys/%s' "${1//.//}"
}

# current_value KEY: prints the key's current value (blanks squeezed); fails if the kernel has no
# such key or it cannot be read.
current_value() {
  local path
  path=$(proc_path "$1")
  [[ -r $path ]] || return 1
  local -a fields
  read -ra fields <"$path" || [[ ${#fields[@]} -gt 0 ]] || return 1
  printf '%s' "${fields[*]}"
}

# limits_nofile FILE: prints the largest nofile value in a limits.conf-style FILE (0 if none).
limits_nofile() {
  local domain item value max=0
  while read -r domain _ item value _; do
    [[ $domain == \#* || $item != nofile || ! $value =~ ^[0-9]+$ ]] && continue
    ((value > max)) && max=$value
  done <"$1"
  printf '%s' "$max"
}

# num_cmp A B: prints -1, 0 or 1 as the decimal integer A is below, equal to or above B. Works
# on numbers of any length (some /proc/sys values are ULONG_MAX, beyond bash's arithmetic).
num_cmp() {
  local a=$1 b=$2
  a=${a#"${a%%[!0]*}"}
  b=${b#"${b%%[!0]*}"}
  if ((${#a} < ${#b})); then
    echo -1
  elif ((${#a} > ${#b})); then
    echo 1
  elif [[ $a == "$b" ]]; then
    echo 0
  elif [[ $a < $b ]]; then
    echo -1
  else
    echo 1
  fi
}
