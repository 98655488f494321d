"""The "before" of BENCHMARKS.md's before/after table: numbers measured before the
repositories were redesigned (the old private-API execution path, since deleted, so they
cannot be measured again), quoted as they were published."""

from __future__ import annotations

# Columns: (BENCHMARKS.md of 2026-11-24: old path against the old baseline, whose asyncpg
# pool sent a reset query on every release; 10^4 / 10^6 rows), (the old path measured against
# the fair baseline of this harness, as reported in the redesign's issue).
UNITS = {
    "login": ("1.27x / 1.32x (2 statements)", "1.63x"),
    "dashboard": ("1.45x / 1.50x", "1.73x"),
    "new_report": ("1.34x / 1.38x", "1.77x"),
    "report_page": ("1.64x / 1.64x", "2.13x"),
    "chat_turn": ("1.58x / 1.60x", "2.04x"),
}
CLIENT_CPU = ("2.95x / 3.41x (200 tasks)", "2.1-2.9x")
CONCURRENCY = ("0.34x / 0.33x (200 tasks; pool 10+20, asyncpg 10..30)", "0.24-0.51x (50-200 tasks)")
ADD_MESSAGES = ("93% / 94% of COPY", "not measured")
HTTP_RPS = ("not measured", "0.41-0.51x")
HTTP_P99 = ("not measured", "241-589 ms vs raw's 98-195 ms")
