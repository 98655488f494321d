"""The performance targets, checked against a run's numbers: PASS or MISS."""

from __future__ import annotations

from typing import Any

from benchmarks.fixtures import REQUEST_SCENARIOS

SCALE_TITLE = {"small": "10^4 rows", "large": "10^6 rows"}
READS = ("login", "dashboard", "report_page", "chat_turn")  # the scale target: reading ones
LABEL = {
    "login": "1. login",
    "dashboard": "2. dashboard",
    "new_report": "3. new report",
    "report_page": "4. report page",
    "chat_turn": "5. chat turn",
    "save_action_plan": "6a. save_action_plan (21 tasks)",
    "add_messages": "6b. add_messages (1,000 messages)",
}
Target = tuple[str, str, bool]  # (what, measured, passed)


def ok(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def ratio(scale: dict[str, Any], name: str, impl: str) -> float:
    """An implementation's median over raw asyncpg's for one scenario."""
    row = scale["scenarios"][name]
    return float(row[impl]["median_ms"] / row["asyncpg"]["median_ms"])


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


def _per_scale(title: str, scale: dict[str, Any]) -> list[Target]:
    ratios = {name: ratio(scale, name, "repo") for name in REQUEST_SCENARIOS}
    worst = max(ratios, key=lambda name: ratios[name])
    where = f"worst {ratios[worst]:.2f}x ({LABEL[worst]})"
    conc = scale["concurrency"]
    ops = conc["repo"]["ops_per_s"] / conc["asyncpg"]["ops_per_s"]
    bulk = scale["bulk"]["add_messages"]
    rows = bulk["repo"]["rows_per_s"] / bulk["asyncpg COPY"]["rows_per_s"]
    return [
        (f"{title}: scenarios 1-5 within 2.0x raw asyncpg", where, ratios[worst] <= 2.0),
        (f"{title}: moonshot, scenarios 1-5 within 1.3x", where, ratios[worst] <= 1.3),
        (f"{title}: concurrency >= 0.5x raw ops/s", f"{ops:.2f}x", ops >= 0.5),
        (f"{title}: add_messages(1,000) >= 70% of COPY rows/s", f"{rows:.0%}", rows >= 0.7),
    ]


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target the run measured."""
    checked: list[Target] = []
    for key, scale in results["scales"].items():
        checked += _per_scale(SCALE_TITLE[key], scale)
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
