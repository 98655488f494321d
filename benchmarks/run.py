"""`python -m benchmarks.run [--scale small|large|both] [--quick] [--out benchmarks/results]`

Builds its own databases (on DATABASE_URL's server, else a throwaway local one), seeds them at
about 10^4 and 10^6 rows, then times the request-shaped scenarios through the repositories,
through hand-written asyncpg and through plain SQLAlchemy ORM, interleaved in one process.
Writes BENCHMARKS.md and benchmarks/plot.png (`--quick`: only under --out, as a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from benchmarks import environment, report
from benchmarks.fixtures import (
    REQUEST_SCENARIOS,
    Fixtures,
    Scenarios,
    chat_messages,
    make_fixtures,
    mixed_op,
    scenario_ops,
)
from benchmarks.scenarios_asyncpg import AsyncpgScenarios, create_pool
from benchmarks.scenarios_orm import OrmScenarios, create_engine
from benchmarks.scenarios_repo import RepoScenarios, opened
from benchmarks.timing import interleaved, interleaved_throughput, summary

SCALES = {"small": 10_000, "large": 1_000_000}
READ_ONLY = ("dashboard", "report_page")  # also timed in db.read_scope()
BULK_ROWS = {"save_action_plan": 21, "add_messages": 1000}


@dataclass(frozen=True)
class Params:
    iterations: int = 300  # per implementation and scenario 1-5
    batch: int = 10  # calls in a row before the next implementation's turn
    warmup: int = 200  # also warms every pooled user's pages (a steady state, not a cold cache)
    bulk_iterations: int = 30
    bulk_batch: int = 3
    bulk_warmup: int = 3
    rounds: int = 3  # concurrency rounds per implementation
    tasks: int = 200
    per_task: int = 5  # operations of each concurrent task per round


QUICK = Params(20, 5, 3, 3, 1, 1, 1, 200, 1)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def measure(
    impls: dict[str, Scenarios], read_scope: RepoScenarios, fx: Fixtures, p: Params
) -> dict[str, Any]:
    """Every scenario on every implementation; summaries plus the raw samples (ms)."""
    out: dict[str, Any] = {"scenarios": {}, "bulk": {}, "concurrency": {}, "samples": {}}
    for name in REQUEST_SCENARIOS:
        chosen = {**impls, read_scope.name: read_scope} if name in READ_ONLY else impls
        ops = {key: scenario_ops(impl, fx)[name] for key, impl in chosen.items()}
        _log(f"  {name}: {len(ops)} implementations x {p.iterations} calls")
        times = await interleaved(ops, iterations=p.iterations, batch=p.batch, warmup=p.warmup)
        out["scenarios"][name] = {key: summary(t) for key, t in times.items()}
        out["samples"][name] = {key: [s * 1000 for s in t] for key, t in times.items()}
    raw = impls["asyncpg"]
    assert isinstance(raw, AsyncpgScenarios)
    messages = chat_messages(BULK_ROWS["add_messages"])
    for name, rows in BULK_ROWS.items():
        ops = {key: scenario_ops(impl, fx)[name] for key, impl in impls.items()}
        if name == "add_messages":
            ops["asyncpg COPY"] = lambda _i: raw.copy_messages(
                fx.bulk_session_id, fx.user_id, messages
            )
        _log(f"  {name}: {len(ops)} implementations x {p.bulk_iterations} calls of {rows} rows")
        times = await interleaved(
            ops, iterations=p.bulk_iterations, batch=p.bulk_batch, warmup=p.bulk_warmup
        )
        out["bulk"][name] = {}
        for key, t in times.items():
            stats = summary(t)
            stats |= {"rows": rows, "rows_per_s": rows / (stats["median_ms"] / 1000)}
            out["bulk"][name][key] = stats
        out["samples"][name] = {key: [s * 1000 for s in t] for key, t in times.items()}
    _log(f"  concurrency: {p.rounds} rounds of {p.tasks} tasks x {p.per_task} operations")
    ops = {key: mixed_op(impl, fx) for key, impl in impls.items()}
    per_round = await interleaved_throughput(
        ops, rounds=p.rounds, tasks=p.tasks, per_task=p.per_task
    )
    for key, values in per_round.items():
        out["concurrency"][key] = {
            "ops_per_s": statistics.median(ops_s for ops_s, _ in values),
            "cpu_ms_per_op": statistics.median(cpu for _, cpu in values),
            "rounds": values,
        }
    return out


async def run_scale(admin_url: URL, scale: str, p: Params) -> dict[str, Any]:
    """A fresh database seeded at `scale`, measured, then dropped."""
    rows = SCALES[scale]
    url = await environment.fresh_database(admin_url, f"exportsathi_bench_{scale}")
    try:
        _log(f"[{scale}] seeding about {rows:,} rows")
        seed_seconds = await environment.seed_database(url, rows)
        async with opened(url) as (repo, read_scope):
            fx = await make_fixtures(repo.db)
            raw = AsyncpgScenarios(await create_pool(url, min_size=10, max_size=30))
            orm = OrmScenarios(create_engine(url))
            try:
                impls: dict[str, Scenarios] = {"asyncpg": raw, "repo": repo, "orm": orm}
                result = await measure(impls, read_scope, fx, p)
            finally:
                await raw.close()
                await orm.close()
        return {"rows": rows, "seed_seconds": seed_seconds, **result}
    finally:
        await environment.drop_database(admin_url, url)


async def run(admin_url: URL, scales: list[str], p: Params, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"params": asdict(p), "quick": quick, "scales": {}}
    results["environment"] = await environment.describe(admin_url)
    for scale in scales:
        results["scales"][scale] = await run_scale(admin_url, scale, p)
    if "large" in scales:
        _log("[seed memory] python -m exportsathi_db seed --rows 1000000 --quiet")
        results["seed_rss"] = await environment.seed_peak_rss(admin_url, SCALES["large"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--scale", choices=["small", "large", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls, small only")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    scales = ["small", "large"] if args.scale == "both" else [args.scale]
    params, scales = (QUICK, ["small"]) if args.quick else (Params(), scales)
    began = time.perf_counter()
    with environment.server() as admin_url:
        results = asyncio.run(run(admin_url, scales, params, args.quick))
    results["runtime_s"] = time.perf_counter() - began
    results["environment"]["load_at_end"] = os.getloadavg()[0]
    written = report.write(results, out=args.out, publish=not args.quick)
    for path in written:
        _log(f"wrote {path}")
    _log(f"done in {results['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
