#!/usr/bin/env bash
# The suite once per database: SQLite, then PostgreSQL and MariaDB when they answer.
# On a developer's machine a database that is not running is skipped, with a message;
# in CI (CI=true) it is a failure, so a missing service never passes quietly.
set -u
bin=${BIN:-.venv/bin}
urls=${DATABASE_URLS:-"sqlite:///:memory: postgres://postgres@127.0.0.1:5432/test mysql://root@127.0.0.1:3306/test"}
failed=""
for url in $urls; do
    if ! "$bin/python" -c '
import socket, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
if u.scheme.startswith("sqlite"):
    sys.exit(0)
socket.create_connection((u.hostname, u.port), timeout=3).close()
' "$url" 2>/dev/null; then
        if [ "${CI:-}" = "true" ]; then
            echo "test-matrix: $url is not reachable" >&2
            failed="$failed $url"
        else
            echo "== skipping DATABASE_URL=$url: not reachable (start the server to test it)"
        fi
        continue
    fi
    echo "== DATABASE_URL=$url"
    DATABASE_URL=$url "$bin/pytest" ${PYTEST_ARGS:-} || failed="$failed $url"
done
if [ -n "$failed" ]; then
    echo "test-matrix: failed on$failed" >&2
    exit 1
fi
