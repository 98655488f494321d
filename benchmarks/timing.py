"""Interleaved timing: implementations take turns in small batches after a warm-up, so drift
(autovacuum, checkpoints, CPU boost, table growth) hits them all alike."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

Op = Callable[[int], Awaitable[Any]]
Switch = Callable[[], None]


async def interleaved(
    ops: dict[str, Op],
    *,
    iterations: int,
    batch: int,
    warmup: int,
    switches: dict[str, tuple[Switch, Switch]] | None = None,
) -> dict[str, tuple[list[float], list[float]]]:
    """(wall seconds, process CPU seconds) per call of each op: `iterations` calls each, in
    round-robin batches of `batch` whose order rotates every round. `switches`: for some ops,
    (on, off) called around each of their batches and their warm-up (e.g. global tracing)."""
    names = list(ops)
    switches = switches or {}
    for name in names:
        on, off = switches.get(name, (_nothing, _nothing))
        on()
        for i in range(warmup):
            await ops[name](i)
        off()
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    rounds = -(-iterations // batch)
    clock, cpu_clock = time.perf_counter, time.process_time
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            op, (walls, cpus) = ops[name], times[name]
            on, off = switches.get(name, (_nothing, _nothing))
            on()
            for k in range(min(batch, iterations - r * batch)):
                start, cpu = clock(), cpu_clock()
                await op(warmup + r * batch + k)
                cpus.append(cpu_clock() - cpu)
                walls.append(clock() - start)
            off()
    return times


def _nothing() -> None:
    pass


async def throughput(op: Op, *, tasks: int, per_task: int, start: int = 0) -> tuple[float, float]:
    """Operations per second of `tasks` concurrent tasks doing `per_task` ops each, and this
    process's CPU milliseconds per operation (what saturates first on a small machine)."""

    async def worker(t: int) -> None:
        for j in range(per_task):
            await op(start + t * per_task + j)

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    count = tasks * per_task
    return count / (time.perf_counter() - began), (time.process_time() - cpu) * 1000 / count


async def interleaved_throughput(
    ops: dict[str, Op], *, rounds: int, tasks: int, per_task: int, start: int = 0
) -> dict[str, list[tuple[float, float]]]:
    """(ops/s, CPU ms/op) of each implementation per round, the order rotating every round;
    a short concurrent warm-up first fills every pool."""
    names = list(ops)
    for name in names:
        await throughput(ops[name], tasks=tasks, per_task=1, start=start)
    result: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            offset = start + (r + 1) * tasks * per_task
            result[name].append(
                await throughput(ops[name], tasks=tasks, per_task=per_task, start=offset)
            )
    return result


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(seconds: list[float], cpu_seconds: list[float] | None = None) -> dict[str, float]:
    """Median, p95 and mean in milliseconds, the number of samples, and (given the CPU time
    of each call) this process's CPU milliseconds per call: total CPU time / calls."""
    ms = [s * 1000 for s in seconds]
    result = {
        "median_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 0.95),
        "mean_ms": statistics.fmean(ms),
        "n": len(ms),
    }
    if cpu_seconds:
        result["cpu_ms_per_op"] = sum(cpu_seconds) * 1000 / len(cpu_seconds)
    return result
