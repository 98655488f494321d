"""BENCHMARKS.md (tables, targets PASS/MISS), the plot, and the raw numbers as JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks import before
from benchmarks.environment import ROOT
from benchmarks.fixtures import OLD_LOGIN, REQUEST_SCENARIOS
from benchmarks.plot import plot
from benchmarks.targets import (
    CONCURRENCY_RATIO,
    COPY_SHARE,
    HTTP_P99_RATIO,
    HTTP_RPS_RATIO,
    LABEL,
    READS,
    SCALE_TITLE,
    UNIT_RATIO,
    concurrency_ratio,
    copy_share,
    ok,
    ratio,
    scale_ratios,
    targets,
)

IMPLS = ("asyncpg", "repo", "orm")
READ_SCOPE, RAW_READ_ONLY = "repo (read_scope)", "asyncpg (read only)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _requests(scale: dict[str, Any]) -> list[str]:
    rows = []
    for name in (*REQUEST_SCENARIOS, OLD_LOGIN):
        stats = scale["scenarios"][name]
        ms = [
            f"{stats[i]['median_ms']:.2f} / {stats[i]['p95_ms']:.2f}" if i in stats else "-"
            for i in IMPLS
        ]
        repo = ratio(scale, name, "repo")
        orm = f"{ratio(scale, name, 'orm'):.2f}x" if "orm" in stats else "-"
        target = ok(repo <= UNIT_RATIO) if name in REQUEST_SCENARIOS else "(for reference)"
        rows.append([LABEL[name], ms[0], ms[1], f"{repo:.2f}x", target, ms[2], orm])
    header = ["unit of work", "asyncpg median / p95 ms", "repo median / p95 ms", "repo/raw"]
    return _table([*header, f"<= {UNIT_RATIO}x", "ORM median / p95 ms", "ORM/raw"], rows)


def _cpu(scale: dict[str, Any]) -> list[str]:
    rows = []
    for name in (*REQUEST_SCENARIOS, OLD_LOGIN):
        stats = scale["scenarios"][name]
        cpu = {i: stats[i]["cpu_ms_per_op"] for i in IMPLS if i in stats}
        raw = cpu["asyncpg"]
        rows.append(
            [LABEL[name]]
            + [f"{cpu[i]:.3f}" if i in cpu else "-" for i in IMPLS]
            + [f"{cpu[i] / raw:.2f}x" if i in cpu else "-" for i in ("repo", "orm")]
        )
    intro = (
        "This process's CPU time over the timed calls divided by their number "
        "(`time.process_time()`; the server is another process)."
    )
    header = ["unit of work", "asyncpg CPU ms/op", "repo CPU ms/op", "ORM CPU ms/op"]
    return [intro, "", *_table([*header, "repo/raw", "ORM/raw"], rows)]


def _read_scope(scale: dict[str, Any]) -> list[str]:
    rows = []
    for name, stats in scale["scenarios"].items():
        if READ_SCOPE in stats:
            read, raw = stats[READ_SCOPE]["median_ms"], stats[RAW_READ_ONLY]["median_ms"]
            rows.append(
                [
                    LABEL[name],
                    f"{raw:.2f}",
                    f"{read:.2f}",
                    f"{read / raw:.2f}x",
                    f"{stats[RAW_READ_ONLY]['cpu_ms_per_op']:.3f}",
                    f"{stats[READ_SCOPE]['cpu_ms_per_op']:.3f}",
                    f"{read / stats['repo']['median_ms']:.2f}x",
                ]
            )
    header = ["unit of work", "asyncpg READ ONLY median ms", "read_scope() median ms"]
    header += ["read_scope/raw", "asyncpg CPU ms/op", "read_scope CPU ms/op"]
    return _table([*header, "read_scope/session_scope"], rows)


def _bulk(scale: dict[str, Any]) -> list[str]:
    rows = []
    for name, by_impl in scale["bulk"].items():
        raw = by_impl["asyncpg"]["rows_per_s"]
        copy = by_impl.get("asyncpg COPY", {}).get("rows_per_s")
        for impl, s in by_impl.items():
            of_copy = f"{s['rows_per_s'] / copy:.0%}" if copy else "-"
            rows.append(
                [
                    LABEL[name],
                    impl,
                    f"{s['median_ms']:.2f}",
                    f"{s['p95_ms']:.2f}",
                    f"{s['rows_per_s']:,.0f}",
                    f"{s['rows_per_s'] / raw:.2f}x",
                    of_copy,
                    f"{s['cpu_ms_per_op']:.2f}",
                ]
            )
    header = ["operation", "implementation", "median ms", "p95 ms", "rows/s", "vs asyncpg"]
    return _table([*header, "of COPY", "CPU ms/op"], rows)


def _concurrency(scale: dict[str, Any], p: dict[str, Any]) -> list[str]:
    rows = []
    for tasks, level in scale["concurrency"].items():
        raw, raw_cpu = level["asyncpg"]["ops_per_s"], level["asyncpg"]["cpu_ms_per_op"]
        for impl in (*IMPLS, *(k for k in level if k.startswith("repo ("))):
            ops, cpu = level[impl]["ops_per_s"], level[impl]["cpu_ms_per_op"]
            passed = ok(ops >= CONCURRENCY_RATIO * raw) if impl == "repo" else ""
            opened = level[impl].get("connections_opened", "-")
            rows.append([tasks, impl, f"{ops:,.0f}", f"{ops / raw:.2f}x", passed, f"{cpu:.2f}",
                         f"{cpu / raw_cpu:.2f}x", str(opened)])  # fmt: skip
    levels = ", ".join(f"{t} tasks x {n}" for t, n in p["concurrency"])
    intro = (
        f"Concurrent tasks each doing operations (scenarios 1-5 in turn, chat turns over 200 "
        f"seeded sessions) per round: {levels} operations; median of {p['rounds']} rounds, "
        "the implementations taking turns. Pools: 10 + 10 overflow (SQLAlchemy, repo and "
        "ORM), 10..20 (asyncpg). Client CPU: this process's CPU time per operation, which "
        "bounds ops/s once the client's one core is saturated. Connections opened: new "
        "server connections the pool opened during the rounds (warm-up included). Two causes "
        "on the SQLAlchemy side: its pool closes an overflow connection that comes back while "
        "its 10 are idle and opens a new one when load rises again; and the package's ping "
        'of a connection idle for over 10 s (`execute(";")`) fails on asyncpg 0.32, so '
        "each such connection is replaced (each implementation idles while the others take "
        "their turn). `repo (pool 20 + 0)`, for reference: the same repositories with a fixed "
        "pool of 20 (`DB_POOL_SIZE=20`, `DB_MAX_OVERFLOW=0`)."
    )
    header = ["tasks", "implementation", "ops/s", "vs asyncpg", f">= {CONCURRENCY_RATIO}x"]
    header += ["client CPU ms/op", "CPU vs asyncpg"]
    return [intro, "", *_table([*header, "connections opened"], rows)]


def _http(http: dict[str, Any]) -> list[str]:
    out = ["", "## HTTP: examples/app.py against the same app on raw asyncpg", ""]
    if "skipped" in http:
        return [*out, f"Skipped: {http['skipped']}."]
    mix = ", ".join(f"{k} {http['mix'].count(k)}" for k in dict.fromkeys(http["mix"]))
    out += [
        f"`wrk -t1 -c{http['connections']} -d{http['seconds']}s` on loopback against uvicorn "
        f"({' '.join(http['uvicorn_flags']) or 'default loop and HTTP parser'}, no access "
        f"log), {http['rounds']} runs per app and worker count taking turns (after a 2 s "
        f"warm-up run each), medians. Requests cycle through a fixed mix of 20 ({mix}) over "
        f"{http['users']} users made beforehand, each with a full report (10 certifications, "
        "5 documents, 21 tasks) and a chat of 50 messages. Both apps: pool 10..20 per worker; "
        "the same SQL and transactions per request (examples/app_asyncpg.py).",
        "",
    ]
    rows = []
    for workers, by_app in http["workers"].items():
        raw = by_app["asyncpg"]
        for name in ("asyncpg", "repo"):
            r = by_app[name]
            rows.append(
                [
                    workers,
                    "examples/app.py (repo)" if name == "repo" else "examples/app_asyncpg.py",
                    f"{r['requests_per_s']:,.0f}",
                    f"{r['requests_per_s'] / raw['requests_per_s']:.2f}x",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['p99_ms'] / raw['p99_ms']:.2f}x",
                    f"{r['errors']} of {r['requests']:,}",
                ]
            )
    header = ["workers", "app", "req/s", "vs raw", "p50 ms", "p99 ms", "p99 vs raw"]
    return out + _table([*header, "errors (non-2xx, socket)"], rows)


def _before_after(results: dict[str, Any]) -> list[str]:
    """Before: the old execution path (deleted); after: this run."""
    scales = results["scales"]

    def both(values: list[str]) -> str:
        return " / ".join(values)

    rows = []
    for name in REQUEST_SCENARIOS:
        old, fair = before.UNITS[name]
        after = both([f"{ratio(s, name, 'repo'):.2f}x" for s in scales.values()])
        rows.append([f"{LABEL[name]}: repo/raw median", old, fair, after, f"<= {UNIT_RATIO}x"])
    cpus = [
        s["scenarios"][n]["repo"]["cpu_ms_per_op"] / s["scenarios"][n]["asyncpg"]["cpu_ms_per_op"]
        for s in scales.values()
        for n in REQUEST_SCENARIOS
    ]
    rows.append(["client CPU per op, repo/raw", *before.CLIENT_CPU,
                 f"{min(cpus):.2f}-{max(cpus):.2f}x (scenarios 1-5)", "-"])  # fmt: skip
    levels = [level for s in scales.values() for level in s["concurrency"].values()]
    conc = [concurrency_ratio(level) for level in levels]
    rows.append(["concurrency, repo/raw ops/s", *before.CONCURRENCY,
                 f"{min(conc):.2f}-{max(conc):.2f}x (50-200 tasks)",
                 f">= {CONCURRENCY_RATIO}x"])  # fmt: skip
    shares = both([f"{copy_share(s):.0%}" for s in scales.values()])
    rows.append(["add_messages(1,000) of COPY rows/s", *before.ADD_MESSAGES, shares,
                 f">= {COPY_SHARE:.0%}"])  # fmt: skip
    http = results.get("http", {})
    if "workers" in http:
        by = http["workers"].values()
        rps = [w["repo"]["requests_per_s"] / w["asyncpg"]["requests_per_s"] for w in by]
        p99 = [f"{w['repo']['p99_ms']:.0f} vs {w['asyncpg']['p99_ms']:.0f}" for w in by]
        rows.append(
            [
                "HTTP req/s, app/raw",
                *before.HTTP_RPS,
                f"{min(rps):.2f}-{max(rps):.2f}x (1-2 workers)",
                f">= {HTTP_RPS_RATIO}x",
            ]
        )
        rows.append(["HTTP p99", *before.HTTP_P99, f"{', '.join(p99)} ms (1, 2 workers)",
                     f"<= {HTTP_P99_RATIO}x raw's"])  # fmt: skip
    header = ["measure", "before, old baseline (BENCHMARKS.md of 2026-11-24)"]
    header += ["before, fair baseline", f"after ({' / '.join(SCALE_TITLE[k] for k in scales)})"]
    intro = (
        "Before: the repositories' old private-API execution path (since deleted), measured "
        "against the old baseline (whose asyncpg pool sent a reset query on every release, "
        "and whose ORM contender used pre-ping and refresh) and, as reported in the redesign's "
        "issue, against the fair baseline described above. After: this run."
    )
    return [intro, "", *_table([*header, "target"], rows)]


def _header(results: dict[str, Any]) -> list[str]:
    env, p = results["environment"], results["params"]
    return [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.run --update` (one command; without `--update` it "
        "writes only under `benchmarks/results/`, not committed; `--quick` for a smoke run). "
        "The raw numbers of a run are in `benchmarks/results/results.json`.",
        "",
        f"- Date: {env['date']}; the whole run took {results['runtime_s']:.0f} s; load average "
        f"(1 min) {env['load_at_start']:.2f} at the start, {env['load_at_end']:.2f} at the end "
        "(other work on this shared machine: absolute times are noisy; the ratios, from "
        "interleaved runs, are what count).",
        f"- Machine: {env['cpu']}, {env['cores']} cores, {env['ram_gib']} GiB RAM ({env['os']}).",
        f"- Python {env['python']}, PostgreSQL {env['postgresql']} ({env['server']} on the same "
        f"machine), SQLAlchemy {env['sqlalchemy']}, asyncpg {env['asyncpg']}; exportsathi_db "
        f"at {env.get('package', 'an unrecorded commit')}.",
        f"- Each implementation makes {p['iterations']} calls per unit of work after "
        f"{p['warmup']} warm-up calls ({p['bulk_iterations']} for bulk); they take turns in "
        f"batches of {p['batch']} ({p['bulk_batch']} for bulk) in one process.",
        "",
        "## How each contender is configured",
        "",
        "- **repo**: this package's repositories, one `db.session_scope()` per unit of work "
        "(`BEGIN … COMMIT`), or `db.read_scope()` (`BEGIN READ ONLY … ROLLBACK`) where "
        "marked; `DatabaseConnection` with pool 10 + 10 overflow. Login is "
        "`UserRepository.login(email)`, one `UPDATE … RETURNING`; the old way "
        "(`get_by_email` + `record_login`) is timed too, for reference.",
        "- **asyncpg** (raw): the same SQL text as the repositories (imported from them, so "
        "the server does identical work), the same round trips, hand-written on an asyncpg "
        "pool of 10..20 connections with `conn.transaction()` (`BEGIN … COMMIT`) around every "
        "unit, or `BEGIN READ ONLY … ROLLBACK` against `read_scope()`. Its pool sends no "
        "reset query on release (a do-nothing `reset` coroutine: asyncpg's `reset=None` means "
        "its default `RESET ALL`-style query, a round trip SQLAlchemy's pool does not send). "
        "JSONB through a binary codec doing the same json work as SQLAlchemy's. "
        "`tests/test_benchmarks_smoke.py` checks that repo and raw send the same statements, "
        "BEGIN/COMMIT/ROLLBACK included, per unit of work.",
        "- **ORM**: plain SQLAlchemy ORM as its users write it (`select`, `session.get`, "
        "`session.add` + `commit`, `selectinload`), configured as the asyncio docs advise: "
        "`async_sessionmaker(expire_on_commit=False)`, no `refresh`, no `pool_pre_ping`, pool "
        "10 + 10 overflow. Its statements are its own (e.g. login: SELECT then UPDATE).",
    ]


def markdown(results: dict[str, Any], plot_path: str) -> str:
    out = [*_header(results), "", "## Targets", ""]
    out += _table(["target", "measured", "result"], [[a, b, ok(c)] for a, b, c in targets(results)])
    out += ["", "## Before and after the redesign", "", *_before_after(results)]
    for key, scale in results["scales"].items():
        seeded = f"{scale['rows']:,} rows requested, seeded in {scale['seed_seconds']:.0f} s"
        out += ["", f"## {SCALE_TITLE[key]} ({seeded})", "", "### Units of work", ""]
        out += [*_requests(scale), "", "### Client CPU per unit of work", "", *_cpu(scale)]
        out += ["", "### Read-only: `read_scope()` against raw `BEGIN READ ONLY … ROLLBACK`", ""]
        out += [*_read_scope(scale), "", "### Bulk", "", *_bulk(scale), "", "### Concurrency", ""]
        out += _concurrency(scale, results["params"])
    if http := results.get("http"):
        out += _http(http)
    if by_scale := scale_ratios(results):
        raw = scale_ratios(results, "asyncpg")
        rows = [
            [LABEL[name], f"{r:.2f}x", ok(r <= 1.25) if name in READS else "(a write)",
             f"{raw[name]:.2f}x"]
            for name, r in by_scale.items()
        ]  # fmt: skip
        out += ["", "## Scale: median at 10^6 rows over 10^4 rows", ""]
        out += _table(["scenario", "repo", "repo <= 1.25x", "asyncpg (for reference)"], rows)
    if rss := results.get("seed_rss"):
        out += [
            "",
            "## Seeding memory",
            "",
            f"`python -m exportsathi_db seed --rows {rss['rows']:,} --quiet`: peak RSS "
            f"{rss['peak_rss_mb']:.0f} MB ({rss['measured_by']}), {rss['seconds']:.0f} s "
            "including the migration.",
        ]
    analysis = ROOT / "benchmarks" / "analysis.md"  # hand-written notes on the misses
    notes = [analysis.read_text()] if analysis.is_file() else []
    chart = ["## Median latency", "", f"![median latency]({plot_path})", ""]
    return "\n".join([*out, "", *notes, *chart])


def save_partial(results: dict[str, Any], out: Path) -> None:
    """What a run has measured so far, as results.partial.json under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.partial.json").write_text(json.dumps(results, indent=1, default=str))


def write(results: dict[str, Any], *, out: Path, publish: bool) -> list[Path]:
    """JSON, plot and BENCHMARKS.md under `out`; `publish` (`--update`): also the committed
    copies, BENCHMARKS.md at the repo root and the plot at benchmarks/plot.png."""
    out.mkdir(parents=True, exist_ok=True)
    data, image, page = out / "results.json", out / "plot.png", out / "BENCHMARKS.md"
    data.write_text(json.dumps(results, indent=1, default=str))
    plot(results, image)
    page.write_text(markdown(results, "plot.png"))
    if not publish:
        return [data, image, page]
    shutil.copyfile(image, ROOT / "benchmarks" / "plot.png")
    (ROOT / "BENCHMARKS.md").write_text(markdown(results, "benchmarks/plot.png"))
    return [data, image, page, ROOT / "benchmarks" / "plot.png", ROOT / "BENCHMARKS.md"]
