"""`python -m benchmarks.run [--scale small|large|both] [--quick] [--no-http] [--out DIR]
[--update] [--render RESULTS_JSON]`

Builds its own databases (on DATABASE_URL's server, else a throwaway local one), seeds them at
about 10^4 and 10^6 rows, then times the request-shaped scenarios through the repositories,
through hand-written asyncpg and through plain SQLAlchemy ORM, interleaved in one process,
then (when `wrk` and uvicorn are installed) the example app over HTTP against the same app on
raw asyncpg. Writes results.json, plot.png and BENCHMARKS.md under --out (default
benchmarks/results/, not committed); `--update` also overwrites the committed BENCHMARKS.md
and benchmarks/plot.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL

from benchmarks import environment, report
from benchmarks import http as http_bench
from benchmarks.fixtures import (
    OLD_LOGIN,
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
from benchmarks.scenarios_repo import RepoScenarios, connection, opened
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
    rounds: int = 5  # concurrency rounds per implementation and level
    # (concurrent tasks, operations of each task per round): about 1,000 operations a round
    concurrency: tuple[tuple[int, int], ...] = ((50, 20), (200, 5))
    http_seconds: int = 10  # per wrk run
    http_rounds: int = 3  # wrk runs per app and worker count, interleaved


QUICK = Params(20, 5, 3, 3, 1, 1, 1, ((50, 1), (200, 1)), 2, 1)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def measure(
    impls: dict[str, Scenarios],
    read_only: dict[str, Scenarios],
    fx: Fixtures,
    p: Params,
    connects: Counter[str],
    pool_variants: dict[str, Scenarios],
) -> dict[str, Any]:
    """Every scenario on every implementation; summaries plus the raw samples (ms).
    `read_only`: the variants that also run the read-only scenarios (read_scope() and raw
    asyncpg's BEGIN READ ONLY ... ROLLBACK). `connects`: new connections opened so far, per
    implementation (a pool that closes and reopens connections under load pays for it).
    `pool_variants`: more implementations for the concurrency rounds only."""
    out: dict[str, Any] = {"scenarios": {}, "bulk": {}, "concurrency": {}, "samples": {}}
    for name in (*REQUEST_SCENARIOS, OLD_LOGIN):
        chosen = {**impls, **read_only} if name in READ_ONLY else impls
        ops = {key: op for key, impl in chosen.items() if (op := scenario_ops(impl, fx).get(name))}
        _log(f"  {name}: {len(ops)} implementations x {p.iterations} calls")
        times = await interleaved(ops, iterations=p.iterations, batch=p.batch, warmup=p.warmup)
        out["scenarios"][name] = {key: summary(*t) for key, t in times.items()}
        out["samples"][name] = {key: [s * 1000 for s in t[0]] for key, t in times.items()}
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
            stats = summary(*t)
            stats |= {"rows": rows, "rows_per_s": rows / (stats["median_ms"] / 1000)}
            out["bulk"][name][key] = stats
        out["samples"][name] = {key: [s * 1000 for s in t[0]] for key, t in times.items()}
    ops = {key: mixed_op(impl, fx) for key, impl in {**impls, **pool_variants}.items()}
    start = 0
    for tasks, per_task in p.concurrency:
        _log(f"  concurrency: {p.rounds} rounds of {tasks} tasks x {per_task} operations")
        opened_before = connects.copy()
        per_round = await interleaved_throughput(
            ops, rounds=p.rounds, tasks=tasks, per_task=per_task, start=start
        )
        start += (p.rounds + 2) * tasks * per_task
        level: dict[str, Any] = {"tasks": tasks, "per_task": per_task}
        for key, values in per_round.items():
            level[key] = {
                "ops_per_s": statistics.median(ops_s for ops_s, _ in values),
                "cpu_ms_per_op": statistics.median(cpu for _, cpu in values),
                "rounds": values,
                "connections_opened": connects[key] - opened_before[key],
            }
        out["concurrency"][str(tasks)] = level
    return out


async def run_scale(admin_url: URL, scale: str, p: Params) -> dict[str, Any]:
    """A fresh database seeded at `scale`, measured, then dropped."""
    rows = SCALES[scale]
    url = await environment.fresh_database(admin_url, f"exportsathi_bench_{scale}")
    try:
        _log(f"[{scale}] seeding about {rows:,} rows")
        try:
            seed_seconds = await environment.seed_database(url, rows)
        except TimeoutError:  # seen twice at 10^6 rows on a loaded machine: asyncpg's COPY
            _log(f"[{scale}] seeding failed with TimeoutError (asyncpg's COPY); once more")
            await environment.drop_database(admin_url, url)
            url = await environment.fresh_database(admin_url, f"exportsathi_bench_{scale}")
            seed_seconds = await environment.seed_database(url, rows)
        fixed_pool = connection(url, pool_size=20, max_overflow=0)
        async with opened(url) as (repo, read_scope):
            fx = await make_fixtures(repo.db)
            connects: Counter[str] = Counter()
            pool = await create_pool(url, on_connect=lambda: connects.update(["asyncpg"]))
            raw = AsyncpgScenarios(pool)
            raw_read_only = AsyncpgScenarios(pool, read_only=True, owns_pool=False)
            orm = OrmScenarios(create_engine(url))
            repo_fixed = RepoScenarios(fixed_pool)
            repo_fixed.name = "repo (pool 20 + 0)"
            engines = [("repo", repo.db.engine), ("orm", orm.engine)]
            for name, engine in [*engines, (repo_fixed.name, fixed_pool.engine)]:
                event.listen(engine.sync_engine, "connect", lambda *_, n=name: connects.update([n]))
            try:
                impls: dict[str, Scenarios] = {"asyncpg": raw, "repo": repo, "orm": orm}
                read_only: dict[str, Scenarios] = {
                    raw_read_only.name: raw_read_only,
                    read_scope.name: read_scope,
                }
                variants: dict[str, Scenarios] = {repo_fixed.name: repo_fixed}
                result = await measure(impls, read_only, fx, p, connects, variants)
            finally:
                await raw.close()
                await orm.close()
                await fixed_pool.dispose()
        return {"rows": rows, "seed_seconds": seed_seconds, **result}
    finally:
        await environment.drop_database(admin_url, url)


async def run(
    admin_url: URL, scales: list[str], p: Params, quick: bool, http: bool, out: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {"params": asdict(p), "quick": quick, "scales": {}}
    results["environment"] = await environment.describe(admin_url)
    for scale in scales:
        results["scales"][scale] = await run_scale(admin_url, scale, p)
        report.save_partial(results, out)  # a later failure keeps what was measured
    if http:
        results["http"] = await http_bench.run(admin_url, p, log=_log)
        report.save_partial(results, out)
    if "large" in scales:
        _log("[seed memory] python -m exportsathi_db seed --rows 1000000 --quiet")
        results["seed_rss"] = await environment.seed_peak_rss(admin_url, SCALES["large"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--scale", choices=["small", "large", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls, small only")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP (wrk) comparison")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: write the reports again from a full run's results.json",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="also overwrite the committed BENCHMARKS.md and benchmarks/plot.png",
    )
    args = parser.parse_args(argv)
    if args.update and args.quick:
        parser.error("--update publishes a full run's numbers; it cannot go with --quick")
    if args.render:
        results = json.loads(args.render.read_text())
        if args.update and results.get("quick"):
            parser.error("--update publishes a full run's numbers, not a --quick run's")
        for path in report.write(results, out=args.out, publish=args.update):
            _log(f"wrote {path}")
        return 0
    scales = ["small", "large"] if args.scale == "both" else [args.scale]
    params, scales = (QUICK, ["small"]) if args.quick else (Params(), scales)
    began = time.perf_counter()
    with environment.server() as admin_url:
        results = asyncio.run(
            run(admin_url, scales, params, args.quick, not args.no_http, args.out)
        )
    results["runtime_s"] = time.perf_counter() - began
    results["environment"]["load_at_end"] = os.getloadavg()[0]
    written = report.write(results, out=args.out, publish=args.update)
    for path in written:
        _log(f"wrote {path}")
    _log(f"done in {results['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
