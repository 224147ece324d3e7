#!/usr/bin/env bash
# The whole test suite: lint, types, and every test on SQLite and PostgreSQL.
# PostgreSQL is required: if it is down we try to start the local cluster, then fail loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export GATEHOUSE_TEST_POSTGRES_URL="${GATEHOUSE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"

pg_up() { python -c "import psycopg,os; psycopg.connect(os.environ['GATEHOUSE_TEST_POSTGRES_URL'], connect_timeout=3).close()" 2>/dev/null; }
if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "==> PostgreSQL is down; starting the local cluster"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
        for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
    fi
    if ! pg_up; then
        echo "gatehouse: FAIL: PostgreSQL is required at $GATEHOUSE_TEST_POSTGRES_URL and is not reachable." >&2
        echo "           start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
        exit 1
    fi
fi

# The console's acceptance test drives Debian's Chromium through Playwright. Never
# `playwright install`: that downloads a browser; the system package is the one we test with.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Chromium for the console's browser test (apt-get install chromium)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq chromium
    else
        echo "gatehouse: /usr/bin/chromium is missing; the console's browser test needs it." >&2
        echo "           install it as root: apt-get update && apt-get install -y chromium" >&2
        exit 1
    fi
fi

# The alert rules' test runs promtool (`promtool check rules`, `promtool test rules`), which comes
# with Debian's prometheus package. Without it that test fails; it is never skipped.
if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing promtool for the alert rules' test (apt-get install prometheus)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus
    else
        echo "gatehouse: promtool is missing; the alert rules' test needs it." >&2
        echo "           install it as root: apt-get update && apt-get install -y prometheus" >&2
        exit 1
    fi
fi

echo "==> ruff"
ruff check .
ruff format --check .
echo "==> mypy (strict)"
mypy
echo "==> pytest (SQLite + PostgreSQL)"
exec pytest -n 2 --dist loadfile "$@"
