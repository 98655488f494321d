#!/usr/bin/env bash
# Lint the migrations' SQL with squawk (squawk-cli from PyPI), as Alembic's offline mode
# prints it (`alembic upgrade --sql`: nothing is connected to). Installs squawk itself into a
# temporary folder, exits non-zero on any violation; takes a few seconds.
#   bash .ci/squawk.sh            (PYTHON=/path/to/python to use another venv than .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

SQUAWK_VERSION=2.70.0
PG_VERSION=15.0 # the oldest PostgreSQL the suite runs on (.ci/run)
PYTHON=${PYTHON:-.venv/bin/python}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The squawk-cli wheel carries the squawk binary; --target keeps it out of the project's venv.
"$PYTHON" -m pip install -q --disable-pip-version-check --target "$work/squawk" \
    "squawk-cli==$SQUAWK_VERSION"
squawk="$work/squawk/bin/squawk"
echo "squawk $("$squawk" --version | awk '{print $2}'), --pg-version=$PG_VERSION"

# The SQL, from the migrations and the default settings (the migration timeouts are in it):
# `alembic upgrade <range> --sql` through the package's Alembic config, in one process.
unset DB_MIGRATION_LOCK_TIMEOUT_MS DB_MIGRATION_STATEMENT_TIMEOUT_MS
first=$("$PYTHON" - "$work" <<'EOF'
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from exportsathi_db.migrations import alembic_config, offline_sql

first = ScriptDirectory.from_config(alembic_config()).get_base()
out = Path(sys.argv[1])
(out / f"first_migration_{first}.sql").write_text(offline_sql(f"base:{first}"))
(out / "later_migrations.sql").write_text(offline_sql(f"{first}:head"))
print(first)
EOF
)
# An empty file would pass: make sure the SQL is there.
grep -q '^CREATE TABLE reports ' "$work/first_migration_$first.sql" ||
    { echo "squawk.sh: no SQL was generated for migration $first" >&2; exit 1; }

# Both files are one transaction each (BEGIN ... COMMIT) that sets lock_timeout and
# statement_timeout first, which satisfies require-lock-timeout and require-statement-timeout
# (not excluded: the migrations really do bound their lock waits). Every index and foreign
# key of the first migration is on a table it creates, so squawk's rules for indexes and
# constraints on existing tables (require-concurrent-index-creation, adding-foreign-key-
# constraint, ...) do not fire there; on later migrations they do, and apply.
#
# Excluded for the first migration only (all ten tables are created empty):
first_excluded=(
    # The rule: changing a varchar(n)'s length later takes an ACCESS EXCLUSIVE lock. The
    # lengths are the schema's documented limits (SCHEMA.md), which callers get back as
    # InvalidDataError ("is too long for its column"); text with a CHECK would carry the same
    # limits, and changing those needs a brief ACCESS EXCLUSIVE lock as well. Raising a
    # varchar's limit is a catalog-only change (no rewrite, no scan), and migrations bound
    # that lock's wait (lock_timeout, retries). A varchar column added by a later migration
    # is still reported.
    prefer-text-field
    # The rule guards against running out of 32-bit values, which happens to sequence-fed
    # keys. Every key here is a UUID; the integer columns are bounded quantities with CHECKs
    # (risk_score 0-100, day_number 1-7, counters >= 0) or per-user counts and day counts
    # (reports_generated, estimated_timeline_days, monthly_volume) nowhere near 2^31. An int
    # column added by a later migration is still reported.
    prefer-bigint-over-int
)
# Downgrades are not linted: they drop tables by design, and only an operator runs them.

status=0
"$squawk" --pg-version="$PG_VERSION" --exclude="$(IFS=,; echo "${first_excluded[*]}")" \
    "$work/first_migration_$first.sql" || status=1
"$squawk" --pg-version="$PG_VERSION" "$work/later_migrations.sql" || status=1
echo "squawk: $([ $status = 0 ] && echo "no violations" || echo "VIOLATIONS") in $((SECONDS - started)) s"
exit $status
