"""`python -m benchmarks.observability [--quick] [--out DIR]`: what observability costs.

The five request scenarios, interleaved in one process on a database seeded at about 10^4
rows, through:
- `asyncpg`: hand-written asyncpg, the same statements and round trips (the baseline);
- `off`: the repositories as shipped (no tracing, no slow-statement log): must equal the
  main benchmark's `repo`;
- `slow log`: DB_SLOW_STATEMENT_MS set above every statement's time, so only the measuring
  is paid, not the logging;
- `tracing`: `observability.tracing.instrument()` with the SDK's TracerProvider and a
  BatchSpanProcessor whose exporter discards the spans (what an app with an exporter pays,
  minus the network);
- `off again`: after `uninstrument()`, the same as `off`.
Tracing is global (asyncpg's classes are wrapped), so it is switched on and off around each of
its batches. Writes observability.md under --out (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy.engine import URL

from benchmarks import environment
from benchmarks.fixtures import REQUEST_SCENARIOS, make_fixtures, scenario_ops
from benchmarks.scenarios_asyncpg import AsyncpgScenarios, create_pool
from benchmarks.scenarios_repo import RepoScenarios
from benchmarks.timing import interleaved
from exportsathi_db import DatabaseConnection, Settings
from exportsathi_db.observability.tracing import instrument, uninstrument

ROWS = 10_000


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def run(admin_url: URL, iterations: int, batch: int, warmup: int) -> str:
    url = await environment.fresh_database(admin_url, "exportsathi_bench_obs")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    settings = Settings(db_pool_size=10, db_max_overflow=10)
    plain = DatabaseConnection(url, settings=settings)
    slow = DatabaseConnection(
        url, settings=settings.model_copy(update={"db_slow_statement_ms": 10_000})
    )
    pool = None
    try:
        await environment.seed_database(url, ROWS)
        fx = await make_fixtures(plain)
        pool = await create_pool(url)
        impls = {
            "asyncpg": AsyncpgScenarios(pool, owns_pool=False),
            "off": RepoScenarios(plain),
            "slow log": RepoScenarios(slow),
            "tracing": RepoScenarios(plain),
            "off again": RepoScenarios(plain),
        }
        switches = {"tracing": (lambda: instrument(tracer_provider=provider), uninstrument)}
        rows = []
        for scenario in REQUEST_SCENARIOS:
            print(f"  {scenario}", file=sys.stderr, flush=True)
            ops = {name: scenario_ops(impl, fx)[scenario] for name, impl in impls.items()}
            times = await interleaved(
                ops, iterations=iterations, batch=batch, warmup=warmup, switches=switches
            )
            medians = {name: statistics.median(walls) * 1000 for name, (walls, _) in times.items()}
            rows.append((scenario, medians))
    finally:
        uninstrument()
        provider.shutdown()
        if pool is not None:
            await pool.close()
        await plain.dispose()
        await slow.dispose()
        await environment.drop_database(admin_url, url)
    return table(rows, iterations)


def table(rows: list[tuple[str, dict[str, float]]], iterations: int) -> str:
    names = list(rows[0][1])
    lines = [
        f"Median ms per request ({iterations} calls each, interleaved); in parentheses, the"
        " ratio to raw asyncpg in the same run.",
        "",
        "| scenario | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for scenario, medians in rows:
        base = medians["asyncpg"]
        cells = [f"{ms:.3f} ({ms / base:.2f}x)" for ms in medians.values()]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    iterations, batch, warmup = (20, 5, 3) if args.quick else (400, 10, 100)
    with environment.server() as admin_url:
        markdown = asyncio.run(run(admin_url, iterations, batch, warmup))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "observability.md"
    path.write_text("# What observability costs\n\n" + markdown)
    print(markdown)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
