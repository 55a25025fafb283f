"""Compare many trials: the paper's Table I (scene x IFN/BVN x policy: success rate and counts) over
recorded bags, and offline evaluations of several policies on the same bags side by side.

    python -m sparsevideonav_ros.tools.compare bags/ --out reports/compare
    python -m sparsevideonav_ros.tools.compare bags/ --out reports/compare --offline scripted --offline sparsevideonav \\
        -p sparsevideonav.action_head=pose

Every bag needs its trial (trial.json beside it: tools/trial attach). Arguments are bags or folders
searched for bags. The report folder holds:

  table.md          Table I over the recorded runs (+ the offline policies), the episodes, the offline comparison
  table.csv         the same cells in long form: scene, task, policy, source, successes, trials, success_rate
  episodes.csv      one row of metrics per recorded episode (tools/trial metrics)
  offline.csv       one row per bag and offline policy
  success_rate.png  success rate per scene, task and policy (recorded and offline)
  comparison.json   everything above
  offline/<policy>/<bag>/   each offline evaluation's report (tools/evaluate, without the overlay video)

Exit status: 0 written; 2 unusable input (a missing bag, a bag without trial, a bad trial file, a policy
that cannot be configured) with one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from sparsevideonav_ros.bags import BagError
from sparsevideonav_ros.configs import ConfigError
from sparsevideonav_ros.trials import metrics as trial_metrics
from sparsevideonav_ros.trials import tables
from sparsevideonav_ros.trials.recorded import find_bags, read_episode
from sparsevideonav_ros.trials.trial import TASK_TYPES, TrialError, find_trial, load_trial


def bag_name(bag: Path) -> str:
    """A short unique-enough name: the bag folder (or file stem), with its run folder when it has one."""
    name = bag.name if bag.is_dir() else bag.stem
    return f"{bag.parent.name}/{name}" if bag.is_dir() and bag.parent.name else name


def recorded_episodes(bag_paths: list[Path], progress: bool = True) -> list[tuple[Path, dict, object, object]]:
    """(bag, metrics, episode, trial) per bag, each bag's trial found beside it."""
    from tqdm import tqdm

    result = []
    for bag in tqdm(bag_paths, desc="metrics", unit="bag", file=sys.stderr, disable=not progress):
        trial_path = find_trial(bag)
        trial = load_trial(trial_path)
        trial.require_goal(str(trial_path))
        episode = read_episode(bag)
        metrics = trial_metrics.episode_metrics(episode, trial)
        metrics["policy"] = metrics["policy"] or "unknown"
        result.append((bag, metrics, episode, trial))
    return result


def split_policy_params(items: list[str], policies: list[str]) -> dict[str, dict]:
    """-p POLICY.NAME=VALUE -> {policy: {name: value}} for the offline policies."""
    import yaml

    values: dict[str, dict] = {policy: {} for policy in policies}
    for item in items:
        key, separator, text = item.partition("=")
        policy, dot, name = key.strip().partition(".")
        if not separator or not dot or not name:
            raise ConfigError(f"-p takes POLICY.NAME=VALUE (e.g. -p scripted.waypoints=[1,0,0]), got {item!r}")
        if policy not in values:
            raise ConfigError(f"-p {item!r}: {policy!r} is not an --offline policy ({', '.join(policies) or 'none'})")
        try:
            values[policy][name] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"-p {item!r}: not a YAML value: {error}") from None
    return values


def offline_rows(episodes: list, policies: list[str], params: dict[str, dict], out: Path,
                 progress: bool = True) -> list[dict]:
    """Run each policy offline on each bag (tools/evaluate) and score its plans against the recorded
    odometry and the trial's goal (trials.metrics.offline_metrics)."""
    from tqdm import tqdm

    from sparsevideonav_ros.policies.base import PolicyError
    from sparsevideonav_ros.tools import evaluate

    rows = []
    jobs = [(policy, item) for policy in policies for item in episodes]
    for policy, (bag, metrics, episode, trial) in tqdm(jobs, desc="offline", unit="run", file=sys.stderr,
                                                      disable=not progress):
        report = out / "offline" / policy / bag_name(bag).replace("/", "__")
        try:
            summary = evaluate.evaluate(bag, policy, report, values=dict(params.get(policy, {})), write_video=False)
        except (evaluate.InputError, PolicyError) as error:
            raise ConfigError(f"offline {policy} on {bag}: {error}") from None
        steps = json.loads((report / "steps.json").read_text())
        scores = trial_metrics.offline_metrics(steps, episode.odom_stamps, episode.poses, metrics["goal_odom"][:2],
                                               trial.success_radius_m, start_pose=metrics["start_pose"])
        versus = summary.get("versus_recorded", {})
        rows.append({"bag": str(bag), "bag_name": bag_name(bag), "policy": f"{policy} (offline)",
                     "scene": trial.scene, "task": trial.task, "trial_index": trial.trial_index,
                     "success": scores["offline_success"], **scores,
                     "median_difference_to_recorded_m": versus.get("median_position_difference_m"),
                     "compute_p50_ms": scores["compute_ms"].get("p50"),
                     "compute_p95_ms": scores["compute_ms"].get("p95"), "report": str(report),
                     "warnings": " | ".join(scores["warnings"])})
    return rows


def plot_success(recorded_cells: dict, offline_cells: dict, path: Path) -> None:
    """Grouped bars of the success rate per scene, one bar per (task, policy); recorded and offline panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [(title, cells) for title, cells in (("Recorded runs", recorded_cells), ("Offline", offline_cells))
              if cells]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (title, cells) in zip(axes[0], panels):
        scenes = tables.ordered((k[0] for k in cells), last=tables.ALL_SCENES)
        task_order = list(TASK_TYPES)  # IFN before BVN, as the paper's table
        series = sorted({(k[1], k[2]) for k in cells}, key=lambda s: (task_order.index(s[0]), s[1]))
        width = 0.8 / max(1, len(series))
        positions = np.arange(len(scenes))
        for index, (task, policy) in enumerate(series):
            rates = [tables.rate(*cells.get((scene, task, policy), (0, 0))) for scene in scenes]
            heights = [100 * r if r is not None else 0.0 for r in rates]
            bars = ax.bar(positions + (index - (len(series) - 1) / 2) * width, heights, width,
                          label=f"{task.upper()} {policy}")
            for bar, scene in zip(bars, scenes):
                successes, trials = cells.get((scene, task, policy), (0, 0))
                if trials:
                    ax.annotate(f"{successes}/{trials}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(positions, scenes)
        ax.set_ylim(0, 112)
        ax.set_ylabel("success rate [%]")
        ax.set_title(f"{title}: success within the trial's radius")
        ax.grid(True, axis="y", alpha=0.3)
        # below the axes: inside, it would cover the bars' counts
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(4, len(series)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(inputs: list[Path], out: Path, offline: Optional[list[str]] = None,
            offline_params: Optional[dict[str, dict]] = None, progress: bool = True) -> dict:
    """Write the comparison report folder; returns what comparison.json holds. Raises BagError,
    TrialError, MetricsError or ConfigError for unusable input."""
    offline = list(dict.fromkeys(offline or []))
    if offline:
        from sparsevideonav_ros.policies import registry
        unknown = [p for p in offline if p not in registry.known_policies()]
        if unknown:
            raise ConfigError(f"unknown --offline policy {', '.join(unknown)}; known: "
                              f"{', '.join(registry.known_policies())}")
    episodes = recorded_episodes(find_bags(inputs), progress)
    episode_rows = []
    for bag, metrics, _, _ in episodes:
        episode_rows.append({**tables.episode_row(metrics), "bag": str(bag), "bag_name": bag_name(bag)})
    out.mkdir(parents=True, exist_ok=True)
    offline_rows_ = offline_rows(episodes, offline, offline_params or {}, out, progress) if offline else []
    recorded_cells = tables.success_cells(episode_rows)
    offline_cells = tables.success_cells(offline_rows_)
    markdown = [f"## Trials: {len(episode_rows)} recorded episodes"
                + (f", offline: {', '.join(offline)}" if offline else ""), "",
                tables.table_markdown(recorded_cells, "Success rate, recorded runs (stopped within the radius)")]
    if offline_rows_:
        markdown.append(tables.table_markdown(offline_cells, "Success rate, offline (first stop decision within the "
                                                             "radius along the recorded path)"))
    markdown.append(tables.episodes_markdown(episode_rows))
    if offline_rows_:
        markdown.append(tables.offline_markdown(offline_rows_, {row["bag"]: row for row in episode_rows}))
    (out / "table.md").write_text("\n".join(markdown), encoding="utf-8")
    table_rows = tables.table_csv(recorded_cells, "recorded") + tables.table_csv(offline_cells, "offline")
    (out / "table.csv").write_text(tables.csv_text(table_rows, ["scene", "task", "policy", "source", "successes",
                                                                "trials", "success_rate"]), encoding="utf-8")
    (out / "episodes.csv").write_text(tables.csv_text(episode_rows, tables.EPISODE_COLUMNS), encoding="utf-8")
    if offline_rows_:
        (out / "offline.csv").write_text(tables.csv_text(offline_rows_, tables.OFFLINE_COLUMNS), encoding="utf-8")
    plot_success(recorded_cells, offline_cells, out / "success_rate.png")
    result = {"episodes": [metrics for _, metrics, _, _ in episodes], "offline": offline_rows_,
              "table": table_rows}
    (out / "comparison.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparsevideonav_ros.tools.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", type=Path, nargs="+", help="bags (folders, .mcap, .db3) or folders holding bags")
    parser.add_argument("--out", type=Path, default=Path("reports/compare"), help="report folder (default "
                                                                                   "reports/compare)")
    parser.add_argument("--offline", action="append", default=[], metavar="POLICY",
                        help="also evaluate this registered policy offline on every bag; repeatable")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="POLICY.NAME=VALUE",
                        help="config value (YAML) of an --offline policy, e.g. -p scripted.waypoints=[1,0,0]")
    options = parser.parse_args(argv)
    try:
        params = split_policy_params(options.param, options.offline)
        result = compare(options.inputs, options.out, options.offline, params)
    except (BagError, TrialError, ConfigError, trial_metrics.MetricsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for metrics in result["episodes"]:
        for warning in metrics["warnings"]:
            print(f"warning: {metrics['bag']}: {warning}", file=sys.stderr)
    for row in result["offline"]:
        if row["warnings"]:
            print(f"warning: {row['policy']} on {row['bag']}: {row['warnings']}", file=sys.stderr)
    print((options.out / "table.md").read_text(encoding="utf-8").split("### Episodes")[0].rstrip())
    print(f"\n{len(result['episodes'])} episodes, {len(result['offline'])} offline runs; report: "
          f"{options.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
