#!/usr/bin/env bash
# What the whole test suite needs from the system, on Debian: Chromium, npm (to fetch Node 22 from the
# npm registry), PostgreSQL and Redis. Whatever is missing is installed and started when run as root;
# anyone else is told in one line per missing piece what to do. A machine that has it all (CI) is left
# exactly as it is: nothing is installed, started or configured there.
#
#   PY=.venv/bin/python bash scripts/system/test-deps.sh    (PY: a Python with psycopg2, to try PostgreSQL as the tests do)
#
# PostgreSQL and Redis are looked after only when the tests would use the defaults (no
# POGGIO_TEST_POSTGRES_URL / POGGIO_TEST_REDIS_URL set) and those do not answer: then the Debian packages
# are installed, the servers started on 127.0.0.1, the database `test` created and the `postgres` role
# trusted from loopback (a line in pg_hba.conf: this is for a machine that runs tests, not production).
set -euo pipefail

say() { printf 'test-deps: %s\n' "$*" >&2; }
root=false; [ "$(id -u)" = 0 ] && root=true
missing=()
updated=false
apt_install() {
  $updated || { apt-get update -qq; updated=true; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# answers HOST PORT: a TCP connection is accepted
answers() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# -- Chromium (browser tests; no browser download) ------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  if $root; then say "installing chromium"; apt_install chromium fonts-dejavu-core
  else missing+=("Chromium: sudo apt-get install chromium (browser tests need /usr/bin/chromium)"); fi
fi

# -- npm (Node 22 and the MCP client tools come from the npm registry) ------------------------------------
if ! command -v npm >/dev/null 2>&1; then
  if $root; then say "installing npm"; apt_install npm
  else missing+=("npm: sudo apt-get install npm (it fetches Node 22 and the MCP client tools)"); fi
fi

# -- PostgreSQL ------------------------------------------------------------------------------------------
# as the tests connect: postgres@127.0.0.1:5432/test, no password
pg_ready() {
  "${PY:-python3}" -c 'import sys, psycopg2; psycopg2.connect(sys.argv[1], connect_timeout=3).close()' \
    postgresql://postgres@127.0.0.1:5432/test >/dev/null 2>&1
}
if [ -z "${POGGIO_TEST_POSTGRES_URL:-}" ] && ! pg_ready; then
  if $root; then
    command -v pg_ctlcluster >/dev/null 2>&1 || { say "installing postgresql"; apt_install postgresql; }
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q '^# poggio-tests' "$hba"; then
      say "trusting the postgres role from loopback in $hba"
      { printf '# poggio-tests: the test suite connects as postgres from loopback without a password\n'
        printf 'host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust\n'
        cat "$hba"; } >"$hba.new"
      mv "$hba.new" "$hba"; chown postgres:postgres "$hba"
    fi
    if answers 127.0.0.1 5432; then
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    else
      say "starting PostgreSQL $version"
      pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    for _ in $(seq 1 100); do answers 127.0.0.1 5432 && break; sleep 0.1; done
    (cd / && runuser -u postgres -- psql -h 127.0.0.1 -Atqc "select 1 from pg_database where datname = 'test'") | grep -q 1 ||
      (cd / && runuser -u postgres -- createdb -h 127.0.0.1 test)
    pg_ready || { say "PostgreSQL was set up but does not answer as postgres@127.0.0.1/test"; exit 1; }
  else
    missing+=("PostgreSQL: none answers at 127.0.0.1:5432 (database test, role postgres trusted from loopback); run 'sudo make system-deps', or set POGGIO_TEST_POSTGRES_URL")
  fi
fi

# -- Redis ----------------------------------------------------------------------------------------------
if [ -z "${POGGIO_TEST_REDIS_URL:-}" ] && ! answers 127.0.0.1 6379; then
  if $root; then
    command -v redis-server >/dev/null 2>&1 || { say "installing redis-server"; apt_install redis-server; }
    say "starting Redis on 127.0.0.1:6379 (nothing kept on disk)"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/poggio-tests.log
    for _ in $(seq 1 100); do answers 127.0.0.1 6379 && break; sleep 0.1; done
    answers 127.0.0.1 6379 || { say "Redis was started but does not answer at 127.0.0.1:6379"; exit 1; }
  else
    missing+=("Redis: none answers at 127.0.0.1:6379; run 'sudo make system-deps', or set POGGIO_TEST_REDIS_URL")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do say "missing $m"; done
  say "or run 'make test-fast', which needs none of these"
  exit 1
fi
