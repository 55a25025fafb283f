"""Comparison tables of many episodes: the paper's Table I layout (scene x IFN/BVN x policy, success
rate and counts) in Markdown and CSV, and offline evaluations side by side. Pure Python.

An episode row is a dict with at least scene, task (ifn | bvn), policy and success; rows from
offline evaluation carry ``offline_success`` and a policy label of their own.
"""
from __future__ import annotations

import csv
import io
from typing import Iterable, Optional

from sparsevideonav_ros.trials.trial import TASK_TYPES

ALL_SCENES = "All"


def success_cells(rows: Iterable[dict], success_key: str = "success") -> dict[tuple[str, str, str], tuple[int, int]]:
    """{(scene, task, policy): (successes, trials)}, with (ALL_SCENES, task, policy) totals."""
    cells: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        for scene in (row["scene"], ALL_SCENES):
            cell = cells.setdefault((scene, row["task"], row["policy"]), [0, 0])
            cell[0] += bool(row[success_key])
            cell[1] += 1
    return {key: (value[0], value[1]) for key, value in cells.items()}


def rate(successes: int, trials: int) -> Optional[float]:
    return successes / trials if trials else None


def cell_text(cell: Optional[tuple[int, int]]) -> str:
    """'60% (6/10)', or '-' for a scene/task/policy without trials."""
    if not cell or not cell[1]:
        return "-"
    return f"{100 * cell[0] / cell[1]:.0f}% ({cell[0]}/{cell[1]})"


def ordered(values: Iterable[str], last: Optional[str] = None) -> list[str]:
    """Sorted unique values, with ``last`` (when present) at the end."""
    unique = set(values)
    return sorted(unique - {last}) + ([last] if last in unique else [])


def table_markdown(cells: dict[tuple[str, str, str], tuple[int, int]], title: str) -> str:
    """Scenes as rows (then All), one column per (task, policy): SR and counts, like the paper's Table I."""
    scenes = ordered((k[0] for k in cells), last=ALL_SCENES)
    policies = ordered(k[2] for k in cells)
    tasks = [t for t in TASK_TYPES if any(k[1] == t for k in cells)]
    columns = [(task, policy) for task in tasks for policy in policies]
    lines = [f"### {title}", "", "| Scene | " + " | ".join(f"{t.upper()} {p}" for t, p in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for scene in scenes:
        name = f"**{scene}**" if scene == ALL_SCENES else scene
        lines.append(f"| {name} | " + " | ".join(cell_text(cells.get((scene, t, p))) for t, p in columns) + " |")
    return "\n".join(lines) + "\n"


def table_csv(cells: dict[tuple[str, str, str], tuple[int, int]], source: str) -> list[dict]:
    """Long-format rows: scene, task, policy, source, successes, trials, success_rate."""
    rows = []
    for (scene, task, policy), (successes, trials) in sorted(cells.items()):
        value = rate(successes, trials)
        rows.append({"scene": scene, "task": task, "policy": policy, "source": source, "successes": successes,
                     "trials": trials, "success_rate": "" if value is None else round(value, 4)})
    return rows


def csv_text(rows: list[dict], columns: Optional[list[str]] = None) -> str:
    columns = columns or (list(rows[0]) if rows else [])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


EPISODE_COLUMNS = ["bag", "policy", "scene", "task", "trial_index", "success", "final_distance_m", "path_length_m",
                   "shortest_path_m", "spl", "time_to_first_motion_s", "time_to_stop_s", "stop_and_go_count",
                   "stale_plan_fraction", "watchdog_fraction", "estop_fraction", "plan_latency_p50_ms",
                   "plan_latency_p95_ms", "warnings"]


def episode_row(metrics: dict) -> dict:
    """A flat row of one episode's metrics (the nested plan latency and warnings flattened)."""
    latency = metrics.get("plan_latency_ms", {})
    return {**{k: metrics.get(k) for k in EPISODE_COLUMNS}, "plan_latency_p50_ms": latency.get("p50"),
            "plan_latency_p95_ms": latency.get("p95"), "warnings": " | ".join(metrics.get("warnings", []))}


def episodes_markdown(rows: list[dict]) -> str:
    lines = ["### Episodes (recorded runs)", "",
             "| Bag | Policy | Scene | Task | # | Success | Final dist. (m) | Path (m) | SPL | First motion (s) "
             "| Stop (s) | Stop-and-go | Stale / watchdog / e-stop | Plan latency p50 / p95 (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def number(value, digits=2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"
    for row in rows:
        shares = " / ".join(f"{100 * row[k]:.0f}%" for k in ("stale_plan_fraction", "watchdog_fraction",
                                                            "estop_fraction"))
        lines.append(f"| {row['bag_name']} | {row['policy']} | {row['scene']} | {row['task'].upper()} "
                     f"| {row['trial_index']} | {'yes' if row['success'] else 'no'}{' (!)' if row['warnings'] else ''} "
                     f"| {number(row['final_distance_m'])} | {number(row['path_length_m'])} | {number(row['spl'])} "
                     f"| {number(row['time_to_first_motion_s'])} | {number(row['time_to_stop_s'])} "
                     f"| {row['stop_and_go_count']} | {shares} "
                     f"| {number(row['plan_latency_p50_ms'], 1)} / {number(row['plan_latency_p95_ms'], 1)} |")
    if any(row["warnings"] for row in rows):
        lines += ["", "(!) the bag starts after motion began (the warnings column of episodes.csv says how): its "
                      "metrics, or a replay or offline evaluation of it, do not cover the whole run."]
    return "\n".join(lines) + "\n"


OFFLINE_COLUMNS = ["bag", "policy", "scene", "task", "trial_index", "steps", "offline_success",
                   "stop_decision_distance_m", "goal_progress_m", "plans_toward_goal_fraction", "stops_outside_radius",
                   "median_difference_to_recorded_m", "compute_p50_ms", "compute_p95_ms", "warnings", "report"]


def offline_markdown(rows: list[dict], recorded: dict[str, dict]) -> str:
    """One row per bag, one column per offline policy, next to the recorded run's outcome.

    recorded: bag -> its episode row (policy, success, final_distance_m)."""
    policies = ordered(row["policy"] for row in rows)
    by_bag: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_bag.setdefault(row["bag"], {})[row["policy"]] = row
    lines = ["### Offline evaluation on the same bags", "",
             "Each policy ran on the recorded frames and odometry (tools/evaluate); its first stop decision after "
             "its first moving plan is placed where the recorded robot was then. Cell: offline success, distance to "
             "the goal at that stop, median goal progress per plan, median waypoint difference to the recorded plans.",
             "", "| Bag | Scene | Task | # | Recorded run | " + " | ".join(policies) + " |",
             "|---|---|---|---|---|" + "---|" * len(policies)]

    def number(value, unit="m") -> str:
        return "-" if value is None or value == "" else f"{value:.2f} {unit}"
    for bag, cells in by_bag.items():
        first = next(iter(cells.values()))
        live = recorded.get(bag, {})
        live_text = (f"{live.get('policy', '?')}: {'yes' if live.get('success') else 'no'}, "
                     f"{number(live.get('final_distance_m'))}") if live else "-"
        texts = []
        for policy in policies:
            row = cells.get(policy)
            if row is None:
                texts.append("-")
                continue
            stop = (f"stop at {number(row['stop_decision_distance_m'])}" if row["stop_decision_distance_m"] is not None
                    else "never stops")
            flag = " (!)" if row.get("warnings") else ""
            texts.append(f"{'yes' if row['offline_success'] else 'no'}{flag}, {stop}, progress "
                         f"{number(row['goal_progress_m'])}, vs recorded {number(row['median_difference_to_recorded_m'])}")
        lines.append(f"| {first['bag_name']} | {first['scene']} | {first['task'].upper()} | {first['trial_index']} "
                     f"| {live_text} | " + " | ".join(texts) + " |")
    if any(row.get("warnings") for row in rows):
        lines += ["", "(!) the policy's frames start after the robot moved (the warnings column of offline.csv)."]
    return "\n".join(lines) + "\n"
