"""The performance targets, checked against a run's numbers: PASS or MISS."""

from __future__ import annotations

from typing import Any

from benchmarks.fixtures import OLD_LOGIN, REQUEST_SCENARIOS

SCALE_TITLE = {"small": "10^4 rows", "large": "10^6 rows"}
READS = ("login", "dashboard", "report_page", "chat_turn")  # the scale target: reading ones
LABEL = {
    "login": "1. login",
    OLD_LOGIN: "1b. login, old way (2 statements)",
    "dashboard": "2. dashboard",
    "new_report": "3. new report",
    "report_page": "4. report page",
    "chat_turn": "5. chat turn",
    "save_action_plan": "6a. save_action_plan (21 tasks)",
    "add_messages": "6b. add_messages (1,000 messages)",
}
UNIT_RATIO = 1.3  # repo median / raw asyncpg median, per unit of work
CONCURRENCY_RATIO = 0.7  # repo ops/s / raw ops/s
COPY_SHARE = 0.9  # add_messages(1,000) rows/s / COPY rows/s
HTTP_RPS_RATIO = 0.75  # example app req/s / raw asyncpg app req/s
HTTP_P99_RATIO = 1.5  # example app p99 / raw asyncpg app p99
Target = tuple[str, str, bool]  # (what, measured, passed)


def ok(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def ratio(scale: dict[str, Any], name: str, impl: str, raw: str = "asyncpg") -> float:
    """An implementation's median over raw asyncpg's for one scenario."""
    row = scale["scenarios"][name]
    return float(row[impl]["median_ms"] / row[raw]["median_ms"])


def scale_ratios(results: dict[str, Any], impl: str = "repo") -> dict[str, float]:
    """An implementation's median at 10^6 rows over 10^4 rows, per scenario (needs both)."""
    scales = results["scales"]
    if not {"small", "large"} <= scales.keys():
        return {}
    large, small = scales["large"]["scenarios"], scales["small"]["scenarios"]
    return {
        name: float(large[name][impl]["median_ms"] / small[name][impl]["median_ms"])
        for name in REQUEST_SCENARIOS
    }


def concurrency_ratio(level: dict[str, Any], impl: str = "repo") -> float:
    return float(level[impl]["ops_per_s"] / level["asyncpg"]["ops_per_s"])


def copy_share(scale: dict[str, Any]) -> float:
    bulk = scale["bulk"]["add_messages"]
    return float(bulk["repo"]["rows_per_s"] / bulk["asyncpg COPY"]["rows_per_s"])


def _per_scale(title: str, scale: dict[str, Any]) -> list[Target]:
    checked: list[Target] = []
    for name in REQUEST_SCENARIOS:
        r = ratio(scale, name, "repo")
        what = f"{title}: {LABEL[name]} <= {UNIT_RATIO}x raw asyncpg (median)"
        checked.append((what, f"{r:.2f}x", r <= UNIT_RATIO))
    for tasks, level in scale["concurrency"].items():
        r = concurrency_ratio(level)
        what = f"{title}: {tasks} concurrent tasks >= {CONCURRENCY_RATIO}x raw ops/s"
        checked.append((what, f"{r:.2f}x", r >= CONCURRENCY_RATIO))
    share = copy_share(scale)
    what = f"{title}: add_messages(1,000) >= {COPY_SHARE:.0%} of COPY rows/s"
    checked.append((what, f"{share:.0%}", share >= COPY_SHARE))
    return checked


def http_targets(http: dict[str, Any]) -> list[Target]:
    checked: list[Target] = []
    for workers, by_app in http.get("workers", {}).items():
        repo, raw = by_app["repo"], by_app["asyncpg"]
        rps = repo["requests_per_s"] / raw["requests_per_s"]
        p99 = repo["p99_ms"] / raw["p99_ms"]
        title = f"HTTP, {workers} worker{'s' if workers != '1' else ''}"
        checked.append(
            (f"{title}: req/s >= {HTTP_RPS_RATIO}x raw", f"{rps:.2f}x", rps >= HTTP_RPS_RATIO)
        )
        measured = f"{p99:.2f}x ({repo['p99_ms']:.0f} vs {raw['p99_ms']:.0f} ms)"
        checked.append((f"{title}: p99 <= {HTTP_P99_RATIO}x raw", measured, p99 <= HTTP_P99_RATIO))
    return checked


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target the run measured."""
    checked: list[Target] = []
    for key, scale in results["scales"].items():
        checked += _per_scale(SCALE_TITLE[key], scale)
    if http := results.get("http"):
        checked += http_targets(http)
    if by_scale := scale_ratios(results):
        worst = max(READS, key=lambda name: by_scale[name])
        where = f"worst {by_scale[worst]:.2f}x ({LABEL[worst]})"
        checked.append(
            ("reading scenarios: median at 10^6 <= 1.25x 10^4", where, by_scale[worst] <= 1.25)
        )
    if rss := results.get("seed_rss"):
        mb = rss["peak_rss_mb"]
        checked.append(("seeding 10^6 rows < 500 MB peak RSS", f"{mb:.0f} MB", mb < 500))
    return checked
