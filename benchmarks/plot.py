"""The plot: median latency per scenario, grouped by implementation, one panel per scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after use("Agg")

SERIES = {"asyncpg": "#4c72b0", "repo": "#55a868", "orm": "#c44e52", "asyncpg COPY": "#8172b2"}
SHORT = {
    "login": "1 login",
    "login_two_statements": "1b old login",
    "dashboard": "2 dashboard",
    "new_report": "3 new report",
    "report_page": "4 report page",
    "chat_turn": "5 chat turn",
    "save_action_plan": "6a plan (21)",
    "add_messages": "6b messages (1k)",
}


def plot(results: dict[str, Any], path: Path) -> None:
    """Grouped bars of median ms on a log scale (bulk ORM is two orders above the rest)."""
    scales = results["scales"]
    fig, axes = plt.subplots(len(scales), 1, figsize=(11, 4.2 * len(scales)), squeeze=False)
    for ax, scale in zip(axes[:, 0], scales.values(), strict=True):
        rows = {**scale["scenarios"], **scale["bulk"]}
        names = list(rows)
        width = 0.8 / len(SERIES)
        for k, (impl, color) in enumerate(SERIES.items()):
            xs = [i + (k - (len(SERIES) - 1) / 2) * width for i, n in enumerate(names)]
            ys = [rows[n][impl]["median_ms"] if impl in rows[n] else 0.0 for n in names]
            bars = ax.bar(xs, ys, width, label=impl, color=color)
            for bar, y in zip(bars, ys, strict=True):
                if y:
                    ax.annotate(
                        f"{y:.1f}",
                        (bar.get_x() + width / 2, y),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), [SHORT[n] for n in names])
        ax.set_ylabel("median ms (log scale)")
        ax.set_title(f"{scale['rows']:,} rows: median latency per unit of work (lower is better)")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
