"""The figures issue 19 asks for ("ahead of the npm server on every load"), checked against a run's medians.

Each goal is a bound on ours/npm for one metric of one workload's cases (or
on our own figure, where npm has none). The report prints every goal with
its figure and whether it is met; a goal whose figures are missing (the
workload was not run, or npm was left out) is printed as not measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .report import summaries
from .runner import WorkloadResult, ratio, say


@dataclass(frozen=True, slots=True)
class Goal:
    workload: str
    metric: str
    bound: float
    at_most: bool  # ours/npm (or ours) must be at most `bound`; else at least
    case: str | None = None  # None: every case of the workload
    absolute: bool = False  # bound on our own figure, not on ours/npm


def _every(workload: str, throughput: str, p99: str, cpu: str) -> list[Goal]:
    return [
        Goal(workload, throughput, 1.0, at_most=False),
        Goal(workload, cpu, 1.0, at_most=True),
        Goal(workload, p99, 1.0, at_most=True),
    ]


GOALS: tuple[Goal, ...] = (
    *_every("write-mix", "ops/s", "p99 ms", "CPU ms/op"),
    Goal("write-mix", "p50 ms", 1.0, at_most=True, case="1 client"),
    Goal("write-mix", "p50 - fsync ms", 1.0, at_most=True, case="1 client"),
    *_every("conflict", "ops/s", "p99 ms", "CPU ms/op"),
    *_every("read-mix", "ops/s", "read p99 ms", "CPU ms/op"),
    *_every("two-process", "ops/s", "p99 ms", "CPU ms/op"),
    *_every("sse-fanout", "events/s", "p99 ms", "CPU ms/write"),
    Goal("large-store", "s", 0.5, at_most=True, case="agentation_get_all_pending, everything"),
    Goal("large-store", "s", 0.6, at_most=True, case="GET /pending (25,000 pending)"),
    Goal("replay", "events/s", 200_000, at_most=False, case="/events", absolute=True),
)


def check(results: list[WorkloadResult]) -> list[dict[str, object]]:
    """One row per goal and case: what was measured and whether it meets the goal."""
    tables = {result.workload.name: summaries(result) for result in results}
    rows: list[dict[str, object]] = []
    for goal in GOALS:
        table = tables.get(goal.workload, {})
        cases = [goal.case] if goal.case is not None else list(table) or ["(every case)"]
        for case in cases:
            by_target = table.get(case, {})
            ours = by_target.get("ours", {}).get(goal.metric, math.nan)
            npm = by_target.get("npm", {}).get(goal.metric, math.nan)
            value = ours if goal.absolute else ratio(ours, npm)
            met = None if math.isnan(value) else (value <= goal.bound if goal.at_most else value >= goal.bound)
            rows.append(
                {
                    "workload": goal.workload,
                    "case": case,
                    "metric": goal.metric,
                    "figure": "ours" if goal.absolute else "ours/npm",
                    "goal": f"{'<=' if goal.at_most else '>='} {goal.bound:g}",
                    "value": value,
                    "met": met,
                }
            )
    return rows


def print_goals(rows: list[dict[str, object]]) -> None:
    say("\nIssue 19 goals (medians over rounds):")
    for row in rows:
        value = row["value"]
        shown = "-" if not isinstance(value, float) or math.isnan(value) else f"{value:.3g}"
        met = row["met"]
        verdict = "met" if met is True else "BEHIND" if met is False else "not measured"
        say(
            f"  {verdict:<12} {row['workload']}: {row['case']}: {row['metric']} {row['figure']} {shown} "
            f"(goal {row['goal']})"
        )
