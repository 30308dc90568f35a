#!/usr/bin/env bash
# `make bench`: the benchmarks on SQLite and on a PostgreSQL server — AIMS_BENCH_POSTGRES_URL if
# set, else a local cluster kept in /var/tmp/aims-bench-pg (fsync on, as in production) so its
# synthetic organisations are generated once. Arguments go to bench/run_all.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
if [ -z "${AIMS_BENCH_POSTGRES_URL:-}" ]; then
  export PG_CLUSTER_KEEP="${PG_CLUSTER_KEEP:-/var/tmp/aims-bench-pg}" PG_CLUSTER_FSYNC=on
  source .ci/pg-cluster start "${BENCH_PG_PORT:-55434}"
  trap '.ci/pg-cluster stop "$PG_CLUSTER_DIR"' EXIT
  export AIMS_BENCH_POSTGRES_URL="$AIMS_TEST_POSTGRES_URL"
fi
"$PY" -m bench.run_all --postgres "$@"
