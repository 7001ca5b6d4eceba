"""The report: the machine, one table per workload with ours, npm and ours/npm, the JSON file and the chart."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .runner import Context, Metric, Target, WorkloadResult, median, ratio, say

TARGETS = ("ours", "npm")


def machine(ctx: Context, npm_note: str) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for dist in ("agentation-mcp", "mcp", "trio", "apsw", "httptools", "orjson"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "ours": f"agentation-mcp {versions['agentation-mcp']} ({_by_name(ctx.targets[0].argv)})",
        "node": "-",
        "npm": "not run" if os.sep in npm_note else npm_note,
        "command": shlex.join([Path(sys.executable).name, "-m", "scripts.bench", *sys.argv[1:]]),
    }
    npm = next((t for t in ctx.targets if t.name == "npm"), None)
    if npm is not None:
        info["node"] = _node_version(npm)
        info["npm"] = f"agentation-mcp {_package_version(Path(npm.argv[1]))} ({_by_name(npm.argv)})"
    return info


def _by_name(argv: Sequence[str]) -> str:
    """A command line with its files named by their names alone: the results hold no path of this machine."""
    return " ".join(Path(arg).name if os.sep in arg else arg for arg in argv)


def _node_version(target: Target) -> str:
    try:
        done = subprocess.run([target.argv[0], "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() or "?"


def _package_version(cli: Path) -> str:
    try:
        return str(json.loads((cli.parent.parent / "package.json").read_text(encoding="utf-8")).get("version", "?"))
    except (OSError, ValueError):
        return "?"


def describe(info: dict[str, Any]) -> None:
    say(f"machine: {info['cores']} core(s), {info['cpu']}, {info['platform']}")
    say(f"python {info['python']}; node {info['node']}")
    say("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    say(f"ours: {info['ours']}")
    say(f"npm:  {info['npm']}")
    say(f"command: {info['command']}")


# --- aggregation ------------------------------------------------------------------------------


def aggregate(metric: Metric, rounds: Sequence[dict[str, float]]) -> float:
    """The median over rounds (the sum for errors and the like); NaN when no round has it."""
    values = [r[metric.key] for r in rounds if metric.key in r and not math.isnan(r[metric.key])]
    if not values:
        return math.nan
    return math.fsum(values) if metric.summed else median(values)


def summaries(result: WorkloadResult) -> dict[str, dict[str, dict[str, float]]]:
    """case -> target -> metric -> aggregated value."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for case, by_target in result.cases.items():
        out[case] = {}
        for target, rounds in by_target.items():
            out[case][target] = {
                m.key: aggregate(m, rounds) for m in result.workload.metrics if any(m.key in r for r in rounds)
            }
    return out


def fmt(value: float, digits: int) -> str:
    if math.isnan(value):
        return "-"
    if digits == 0 and abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


# --- tables -----------------------------------------------------------------------------------


def _print_table(header: list[list[str]], rows: list[list[str]]) -> None:
    widths = [max(len(line[i]) for line in [*header, *rows]) for i in range(len(rows[0]))]
    for line in [*header, *rows]:
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        say("  " + "  ".join(cells).rstrip())


def print_workload(result: WorkloadResult, has_npm: bool) -> None:
    workload = result.workload
    say(f"\n[{workload.name}] {workload.title}")
    if not result.cases:
        say("  (no results)")
        return
    table = summaries(result)
    show_npm = has_npm and not workload.ours_only
    rounds = {t: max((len(by.get(t, [])) for by in result.cases.values()), default=0) for t in TARGETS}
    say(
        f"  rounds: ours {rounds['ours']}"
        + (f", npm {rounds['npm']}" if show_npm else "")
        + f"; {result.seconds:.0f} s"
    )
    # Consecutive cases with the same metrics share one table.
    groups: list[tuple[list[Metric], list[str]]] = []
    for case, by_target in table.items():
        present = [m for m in workload.metrics if any(m.key in values for values in by_target.values())]
        if groups and [m.key for m in groups[-1][0]] == [m.key for m in present]:
            groups[-1][1].append(case)
        else:
            groups.append((present, [case]))
    for metrics, cases in groups:
        top = ["case"]
        sub = [""]
        for m in metrics:
            if show_npm:
                top += [m.key, "", ""]
                sub += ["ours", "npm", "o/n"]
            else:
                top.append(m.key)
                sub.append("ours")
        rows = []
        for case in cases:
            row = [case]
            for m in metrics:
                ours = table[case].get("ours", {}).get(m.key, math.nan)
                row.append(fmt(ours, m.digits))
                if show_npm:
                    npm = table[case].get("npm", {}).get(m.key, math.nan)
                    row += [fmt(npm, m.digits), fmt(ratio(ours, npm), 2)]
            rows.append(row)
        _print_table([top, sub], rows)


def print_report(info: dict[str, Any], results: list[WorkloadResult], ctx: Context, has_npm: bool) -> None:
    say("\n" + "=" * 100)
    say("RESULTS: medians over rounds (errors: summed); o/n = ours/npm; CPU = the server process's user+system time")
    say("=" * 100)
    describe(info)
    for result in results:
        print_workload(result, has_npm)
    if ctx.notes:
        say("\nNotes:")
        for note in ctx.notes:
            say(f"  - {note}")


# --- JSON and the chart ---------------------------------------------------------------------


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(
    path: Path,
    info: dict[str, Any],
    results: list[WorkloadResult],
    ctx: Context,
    goals: list[dict[str, object]] | None = None,
) -> None:
    workloads: dict[str, Any] = {}
    for result in results:
        table = summaries(result)
        cases: dict[str, Any] = {}
        for case, by_target in result.cases.items():
            entry: dict[str, Any] = {
                t: {"rounds": rounds, "summary": table[case][t]} for t, rounds in by_target.items()
            }
            if "ours" in table[case] and "npm" in table[case]:
                ours, npm = table[case]["ours"], table[case]["npm"]
                entry["ours/npm"] = {k: ratio(ours[k], npm[k]) for k in ours if k in npm}
            cases[case] = entry
        workloads[result.workload.name] = {
            "title": result.workload.title,
            "seconds": result.seconds,
            "metrics": [asdict(m) for m in result.workload.metrics],
            "cases": cases,
        }
    document = {
        "machine": info,
        "rounds": ctx.rounds,
        "counts": asdict(ctx.counts),
        "workloads": workloads,
        "goals": goals or [],
        "notes": ctx.notes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(document), indent=2) + "\n", encoding="utf-8")
    say(f"\nJSON: {path}")


def chart_points(results: list[WorkloadResult]) -> list[tuple[str, float]]:
    """(label, ours relative to npm, >1 = ours better) for each case with both figures of its chart metric."""
    points: list[tuple[str, float]] = []
    for result in results:
        keys = (result.workload.chart_metric, *result.workload.chart_extra)
        for case, by_target in summaries(result).items():
            for key in keys:
                metric = next((m for m in result.workload.metrics if m.key == key), None)
                if metric is None:
                    continue
                ours = by_target.get("ours", {}).get(metric.key, math.nan)
                npm = by_target.get("npm", {}).get(metric.key, math.nan)
                value = ratio(ours, npm) if metric.higher_is_better else ratio(npm, ours)
                if not math.isnan(value) and value > 0:
                    sense = "ours/npm" if metric.higher_is_better else "npm/ours"
                    points.append((f"{result.workload.name}: {case} ({metric.key}, {sense})", value))
    return points


def write_chart(path: Path, results: list[WorkloadResult], info: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("chart: skipped (matplotlib is not installed; pip install -e '.[bench]')")
        return
    points = chart_points(results)
    if not points:
        say("chart: skipped (no figure of both servers)")
        return
    labels = [label for label, _ in points][::-1]
    values = [value for _, value in points][::-1]
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(points) + 1.8))
    colors = ["#2b8a3e" if v >= 1 else "#c92a2a" for v in values]
    ax.barh(labels, [v - 1 for v in values], left=1.0, color=colors)  # each bar runs from 1.0 to its ratio
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    reach = max(max(values), 1 / min(values), 2.0) * 1.4
    ax.set_xlim(1 / reach, reach)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if 1 / reach <= t <= reach]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    for y, value in enumerate(values):
        ax.text(
            value,
            y,
            f" {value:.2f} ",
            va="center",
            fontsize=8,
            ha="left" if value >= 1 else "right",
        )
    ax.set_xlabel("ours relative to npm: throughput ours/npm, times npm/ours (>1: ours better; log scale)")
    fig.suptitle(  # over the whole figure: the long case labels push the axes to the right
        f"agentation-mcp (Python) vs npm agentation-mcp: {info['cores']} cores, "
        f"python {info['python']}, node {info['node']}",
        fontsize=11,
    )
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    say(f"chart: {path}")
