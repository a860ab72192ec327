#!/usr/bin/env bash
# Make the virtual environment `make` installs into: PYTHON -m venv VENV, with pip in it.
#
#   bash scripts/system/python-venv.sh python3 .venv
#
# A venv left half-made (python3-venv was missing, or an install was cut short: no working pip in it) is
# removed and made again, never reused. On Debian without python3-venv (no ensurepip), root gets it
# installed; anyone else is told in one line what to install.
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"

say() { printf 'python-venv: %s\n' "$*" >&2; }

command -v "$python" >/dev/null 2>&1 || { say "$python is not installed: Poggio needs Python 3.11 or newer (Debian: apt-get install -y python3)."; exit 1; }
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { say "$("$python" --version 2>&1) is too old: Poggio needs Python 3.11 or newer."; exit 1; }

if [ -e "$venv" ] && ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  say "$venv is half-made (no working pip in it): making it again"
  rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] && exit 0

if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  pkg="python3-venv"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $pkg (Python's venv module is missing)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  else
    say "Python's venv module is missing: run 'sudo apt-get install $pkg', then make again."
    exit 1
  fi
fi
if ! "$python" -m venv "$venv"; then
  rm -rf "$venv"
  say "'$python -m venv $venv' failed (see above); nothing was left behind."
  exit 1
fi
