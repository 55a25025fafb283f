"""Trial definitions, per-episode metrics and the comparison table on generated bags: no ROS graph.

Bags are written with the project's writer (bags.open_writer) from messages serialized by rclpy, the
bytes a live recorder stores, with a scripted episode whose every metric is known by construction.
"""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparsevideonav_ros import bags
from sparsevideonav_ros.tools import compare as compare_tool
from sparsevideonav_ros.tools import trial as trial_tool
from sparsevideonav_ros.trials import metrics, tables
from sparsevideonav_ros.trials.recorded import read_episode
from sparsevideonav_ros.trials.trial import Goal, Trial, TrialError, load_trial, save_trial, trial_from_json

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0  # bag time of the generated episodes' first message (s)


def serialize(msg) -> bytes:
    from rclpy.serialization import serialize_message
    return serialize_message(msg)


def status_msg(stamp: float, values: dict):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from sparsevideonav_ros.nodes import common

    status = DiagnosticStatus(name="node", message=values.get("state", ""))
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    array = DiagnosticArray(status=[status])
    array.header.stamp = common.seconds_to_stamp(stamp)
    return array


def forward_speed(t: float, segments) -> float:
    """Speed (m/s) at t seconds into the episode: segments of (start s, end s, speed m/s)."""
    return next((speed for start, end, speed in segments if start <= t < end), 0.0)


# The known episode: instruction at 1 s; still until 2 s; 0.5 m/s to 4 s (1 m); a 1 s rest (stale plan);
# 0.5 m/s from 5 to 7 s (2 m in all); at rest to the end (12 s). E-stop 9..10 s, watchdog 10..11 s.
SEGMENTS = ((2.0, 4.0, 0.5), (5.0, 7.0, 0.5))


def write_bag(folder: Path, segments=SEGMENTS, duration_s: float = 12.0, start_offset_m: float = 0.0,
              late_frames_s: float = 0.0, with_instruction: bool = True, backend: str = "sim",
              early_command: bool = False) -> Path:
    """A recording of a robot driving straight along +x: odometry at 20 Hz (twist filled), cmd_vel,
    controller/go2/policy status at 2 Hz, one plan every 0.5 s (latency 100 ms, every tenth 300 ms,
    each published twice), the instruction at 1 s and a camera frame every 0.25 s from ``late_frames_s``."""
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry, Path as PathMsg
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header, String

    from sparsevideonav_ros.nodes import common

    records = []  # (bag time ns, topic, type, bytes)

    def add(t: float, topic: str, msg_type: str, msg) -> None:
        records.append((int(round((T0 + t) * 1e9)), topic, msg_type, serialize(msg)))

    x = start_offset_m
    steps = int(round(duration_s * 20))
    for i in range(steps + 1):
        t = i / 20
        if i:
            x += forward_speed(t - 0.025, segments) * 0.05  # the speed over the last 50 ms, at its midpoint
        odom = Odometry(header=Header(stamp=common.seconds_to_stamp(T0 + t - 0.002), frame_id="odom"),
                        child_frame_id="base_link")
        odom.pose.pose.position.x = x
        odom.pose.pose.orientation.w = 1.0
        odom.twist.twist.linear.x = forward_speed(t, segments)
        add(t + (0.3 if early_command else 0.0), "/odom", "nav_msgs/msg/Odometry", odom)
        command = Twist()
        command.linear.x = forward_speed(t, segments)
        add(t + 0.001, "/cmd_vel", "geometry_msgs/msg/Twist", command)
    for i in range(int(duration_s * 2)):
        t = i / 2
        controller = "stale" if 4.0 <= t < 5.0 else "tracking" if forward_speed(t, segments) else "arrived"
        bridge = "estop" if 9.0 <= t < 10.0 else "timeout" if 10.0 <= t < 11.0 else "moving"
        add(t + 0.01, "/controller/status", "diagnostic_msgs/msg/DiagnosticArray", status_msg(T0 + t, {"state": controller}))
        add(t + 0.02, "/go2/status", "diagnostic_msgs/msg/DiagnosticArray",
            status_msg(T0 + t, {"state": bridge, "backend": backend}))
        add(t + 0.03, "/policy/status", "diagnostic_msgs/msg/DiagnosticArray",
            status_msg(T0 + t, {"state": "ok", "policy": "scripted"}))
        latency = 0.3 if i % 10 == 9 else 0.1
        plan = PathMsg(header=Header(stamp=common.seconds_to_stamp(T0 + t + 0.2 - latency), frame_id="base_link"))
        add(t + 0.2, "/policy/path", "nav_msgs/msg/Path", plan)
        add(t + 0.4, "/policy/path", "nav_msgs/msg/Path", plan)  # re-published: the same frame, not a new plan
    if with_instruction:
        add(1.0, "/instruction", "std_msgs/msg/String", String(data="walk two metres"))
    for i in range(int((duration_s - late_frames_s) * 4)):
        t = late_frames_s + i / 4
        add(t + 0.004, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
            CompressedImage(header=Header(stamp=common.seconds_to_stamp(T0 + t), frame_id="camera_link"),
                            format="jpeg", data=b"\xff\xd8"))
    bags.write_bag(folder, records)
    return folder


TRIAL = Trial(instruction="walk two metres", task="ifn", scene="lab", trial_index=0, goal=Goal("start", 1.5, 0.0))


@pytest.fixture(scope="module")
def known_bag(tmp_path_factory) -> Path:
    return write_bag(tmp_path_factory.mktemp("trials") / "known")


# -- trial definition ------------------------------------------------------------------------

def test_trial_round_trips_through_json(tmp_path):
    trial = Trial(instruction="go to the door", task="bvn", scene="corridor", trial_index=3,
                  goal=Goal("odom", 2.0, -1.0, 0.5, odom_frame_id="odom", captured_at="2026-12-02T03:00:00+00:00"),
                  success_radius_m=1.0, notes="wet floor")
    path = save_trial(trial, tmp_path)
    assert path == tmp_path / "trial.json"
    data = json.loads(path.read_text())
    assert data["format"] == "sparsevideonav_ros.trial" and data["version"] == 1
    assert load_trial(path) == trial
    assert trial_from_json({**data, "task": "BVN"}).task == "bvn"  # as the paper writes it


@pytest.mark.parametrize("change, message", [
    ({"trial_idx": 0}, "unknown key 'trial_idx' (did you mean 'trial_index'?)"),
    ({"version": 2}, "trial format version 2; this tool reads version 1 (a newer tool wrote it)"),
    ({"task": "vln"}, "task must be one of ifn, bvn"),
    ({"success_radius_m": 0}, "success_radius_m must be > 0 metres, got 0"),
    ({"success_radius_m": "1.5"}, "success_radius_m must be a finite number, got '1.5'"),
    ({"trial_index": -1}, "trial_index must be an integer >= 0, got -1"),
    ({"instruction": " "}, "instruction must be a non-empty string"),
    ({"goal": {"frame": "map", "x": 1, "y": 0}}, "goal.frame must be one of start, odom"),
    ({"goal": {"frame": "start", "x": float("nan"), "y": 0}}, "goal.x must be a finite number"),
    ({"goal": {"frame": "start", "x": 1}}, "goal is missing 'y'"),
    ({"goal": [1, 0]}, "goal must be an object"),
    ({"format": "something.else"}, "not a trial file"),
])
def test_invalid_trials_are_refused_naming_the_file_and_field(tmp_path, change, message):
    data = {**TRIAL.to_json(), **change}
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TrialError) as error:
        load_trial(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_missing_fields_and_broken_json_are_refused(tmp_path):
    path = tmp_path / "trial.json"
    path.write_text(json.dumps({"version": 1, "instruction": "x"}))
    with pytest.raises(TrialError, match="missing task, scene, trial_index"):
        load_trial(path)
    path.write_text("{\"version\": 1,")
    with pytest.raises(TrialError, match="not valid JSON"):
        load_trial(path)
    with pytest.raises(TrialError, match="no trial file at"):
        load_trial(tmp_path / "nothing.json")


def test_a_relative_goal_is_placed_in_the_start_frame():
    start = np.array([1.0, 2.0, math.pi / 2])  # facing +y
    goal = Goal("start", 1.0, 0.5, 0.25).in_odom(start)
    assert goal == pytest.approx([0.5, 3.0, math.pi / 2 + 0.25])
    assert math.isnan(Goal("start", 1.0, 0.0).in_odom(start)[2])
    assert Goal("odom", 4.0, 5.0, None).in_odom(start)[:2] == pytest.approx([4.0, 5.0])  # the start does not matter


# -- metrics ---------------------------------------------------------------------------------

def test_metrics_of_the_known_episode(known_bag):
    m = metrics.episode_metrics(read_episode(known_bag), TRIAL)
    assert m["policy"] == "scripted" and m["episode_start"] == "first instruction"
    assert m["start_pose"] == [0.0, 0.0, 0.0] and m["final_pose"][0] == pytest.approx(2.0, abs=1e-6)
    assert m["success"] is True and m["stopped_at_end"] is True
    assert m["final_distance_m"] == pytest.approx(0.5, abs=1e-6)
    assert m["path_length_m"] == pytest.approx(2.0, abs=1e-6) and m["shortest_path_m"] == pytest.approx(1.5)
    assert m["spl"] == pytest.approx(0.75, abs=1e-4)  # 1.5 m shortest / 2 m driven
    assert m["time_to_first_motion_s"] == pytest.approx(1.0, abs=0.06)  # 2 s, 1 s after the instruction
    assert m["time_to_stop_s"] == pytest.approx(6.0, abs=0.06)  # at rest from 7 s on
    assert m["stop_and_go_count"] == 1  # the 1 s rest at 4..5 s
    duration = m["episode_duration_s"]
    assert duration == pytest.approx(11.0, abs=0.01)
    for key in ("stale_plan_fraction", "estop_fraction", "watchdog_fraction"):
        assert m[key] == pytest.approx(1.0 / duration, abs=0.01), key  # 1 s each
    assert set(m["bridge_state_fractions"]) == {"moving", "estop", "timeout"}
    latency = m["plan_latency_ms"]
    assert latency["count"] == 24  # one per planned frame, the re-published copies not counted
    expected = np.array([300.0 if i % 10 == 9 else 100.0 for i in range(24)])
    assert latency["p50"] == pytest.approx(100.0, abs=0.1)
    assert latency["p95"] == pytest.approx(float(np.percentile(expected, 95)), abs=0.1)
    assert m["warnings"] == []


def test_success_needs_the_radius_and_a_stop(known_bag, tmp_path):
    episode = read_episode(known_bag)
    far = metrics.episode_metrics(episode, Trial("x", "bvn", "lab", 1, Goal("start", 4.0, 0.0)))
    assert far["success"] is False and far["spl"] == 0.0 and far["final_distance_m"] == pytest.approx(2.0, abs=1e-6)
    assert far["outcome"] == "stopped 0.50 m outside the success radius"
    tight = metrics.episode_metrics(episode, Trial("x", "ifn", "lab", 1, Goal("start", 1.5, 0.0), success_radius_m=0.4))
    assert tight["success"] is False
    moving = write_bag(tmp_path / "moving", segments=((2.0, 12.5, 0.2),))
    still_moving = metrics.episode_metrics(read_episode(moving), Trial("x", "ifn", "lab", 1, Goal("start", 2.0, 0.0)))
    assert still_moving["final_distance_m"] < 1.5 and still_moving["success"] is False
    assert still_moving["time_to_stop_s"] is None and still_moving["outcome"] == "still moving at the end of the bag"
    still = write_bag(tmp_path / "still", segments=())
    never = metrics.episode_metrics(read_episode(still), Trial("x", "ifn", "lab", 1, Goal("start", 2.0, 0.0)))
    assert never["time_to_first_motion_s"] is None and never["path_length_m"] == 0.0 and never["success"] is False


def test_a_bag_that_starts_after_motion_began_says_so(tmp_path, capsys):
    late = write_bag(tmp_path / "late", segments=((0.0, 3.0, 0.4),), start_offset_m=0.73, early_command=True,
                     late_frames_s=2.0)
    m = metrics.episode_metrics(read_episode(late), TRIAL)
    text = " ".join(m["warnings"])
    assert len(m["warnings"]) == 4, m["warnings"]
    assert "first odometry (0.30 s into the bag) already moves at 0.40 m/s" in text
    assert "0.73 m and 0.00 rad from the odometry origin, where the sim robot starts" in text
    assert "cmd_vel was nonzero 0.30 s before the first odometry" in text
    assert "camera frames start 2.00 s into the bag, after the robot had moved" in text
    # a real Go2's odometry starts where it booted: away from the origin alone says nothing
    real = write_bag(tmp_path / "real", segments=(), start_offset_m=5.0, backend="unitree")
    assert metrics.episode_metrics(read_episode(real), TRIAL)["warnings"] == []
    # and the command prints them, one line each
    save_trial(TRIAL, late)
    capsys.readouterr()
    assert trial_tool.main(["metrics", str(late)]) == 0
    printed = capsys.readouterr().err.splitlines()
    assert printed == [f"warning: {late}: {warning}" for warning in m["warnings"]]


def test_without_an_instruction_the_episode_starts_with_the_bag(tmp_path):
    bag = write_bag(tmp_path / "quiet", with_instruction=False)
    m = metrics.episode_metrics(read_episode(bag), TRIAL)
    assert m["episode_start"].startswith("bag start")
    assert m["time_to_first_motion_s"] == pytest.approx(2.0, abs=0.06)


def test_offline_metrics_place_the_stop_decision_on_the_recorded_path():
    stamps = np.arange(0.0, 10.01, 0.1)
    poses = np.column_stack([np.minimum(stamps * 0.3, 2.0), np.zeros_like(stamps), np.zeros_like(stamps)])
    goal = np.array([3.0, 0.0])  # the robot stops 1 m short of it, inside the 1.5 m radius

    def step(t, state, waypoints):
        return {"stamp": t, "state": state, "waypoints": waypoints, "compute_ms": 5.0}
    warming = [step(0.0, "warming_up", []), step(0.5, "waiting_instruction", [])]
    moving = [step(t, "ok", [[1.0, 0.0, 0.0]]) for t in np.arange(1.0, 7.0, 0.5)]
    good = warming + moving + [step(7.5, "done", []), step(8.0, "done", [])]
    result = metrics.offline_metrics(good, stamps, poses, goal, 1.5, start_pose=poses[0])
    assert result["offline_success"] is True and result["stop_decision_step"] == len(warming) + len(moving)
    assert result["stop_decision_distance_m"] == pytest.approx(1.0, abs=1e-6)
    assert result["goal_progress_m"] == pytest.approx(1.0, abs=1e-6) and result["plans_toward_goal_fraction"] == 1.0
    assert result["warnings"] == [] and result["states"]["ok"] == len(moving)
    # a stop before any motion (warming up) is no decision; one far from the goal is a failure
    early = warming + moving[:2] + [step(2.0, "ok", [[0.02, 0.0, 0.0]])]  # a plan that stands still
    result = metrics.offline_metrics(early, stamps, poses, goal, 1.5)
    assert result["offline_success"] is False and result["stop_decision_distance_m"] == pytest.approx(2.4, abs=1e-6)
    assert result["stops_outside_radius"] == 1
    never = metrics.offline_metrics(warming + moving, stamps, poses, goal, 1.5)
    assert never["offline_success"] is False and never["stop_decision_step"] is None
    mid_run = metrics.offline_metrics(moving[4:], stamps, poses, goal, 1.5, start_pose=poses[0])
    assert "first frame is 0.90 m from the episode's start pose" in mid_run["warnings"][0]


# -- tables ----------------------------------------------------------------------------------

def test_table_one_layout():
    rows = [{"scene": "lab", "task": "ifn", "policy": "a", "success": True},
            {"scene": "lab", "task": "ifn", "policy": "a", "success": False},
            {"scene": "lab", "task": "bvn", "policy": "b", "success": True},
            {"scene": "hall", "task": "ifn", "policy": "b", "success": False}]
    cells = tables.success_cells(rows)
    assert cells[("lab", "ifn", "a")] == (1, 2) and cells[(tables.ALL_SCENES, "ifn", "b")] == (0, 1)
    text = tables.table_markdown(cells, "SR")
    assert "| Scene | IFN a | IFN b | BVN a | BVN b |" in text
    assert "| hall | - | 0% (0/1) | - | - |" in text
    assert "| lab | 50% (1/2) | - | - | 100% (1/1) |" in text
    assert text.index("| hall") < text.index("| lab") < text.index("| **All**")
    csv_rows = list(csv.DictReader(tables.csv_text(tables.table_csv(cells, "recorded")).splitlines()))
    assert {"scene": "lab", "task": "ifn", "policy": "a", "source": "recorded", "successes": "1", "trials": "2",
            "success_rate": "0.5"} in csv_rows


def test_compare_over_generated_bags(known_bag, tmp_path):
    folder = tmp_path / "bags"
    first = write_bag(folder / "run1" / "bag", segments=SEGMENTS)
    second = write_bag(folder / "run2" / "bag", segments=((2.0, 3.0, 0.5),))
    save_trial(TRIAL, first)
    save_trial(Trial("walk far", "bvn", "yard", 0, Goal("start", 3.0, 0.0)), second.parent)  # in the run folder
    out = tmp_path / "report"
    assert compare_tool.main([str(folder), "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "| Scene | IFN scripted | BVN scripted |" in table
    assert "| lab | 100% (1/1) | - |" in table and "| yard | - | 0% (0/1) |" in table
    episodes = list(csv.DictReader((out / "episodes.csv").open()))
    assert [(e["scene"], e["success"]) for e in episodes] == [("lab", "True"), ("yard", "False")]
    assert float(episodes[0]["spl"]) == pytest.approx(0.75, abs=1e-3)
    assert (out / "success_rate.png").stat().st_size > 5_000
    assert json.loads((out / "comparison.json").read_text())["episodes"][1]["final_distance_m"] == pytest.approx(2.5)


# -- command line ----------------------------------------------------------------------------

def run_cli(module: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *arguments], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


@pytest.mark.parametrize("module, arguments, message", [
    ("sparsevideonav_ros.tools.trial", ["metrics", "/nonexistent/bag"], "error: no bag at /nonexistent/bag"),
    ("sparsevideonav_ros.tools.compare", ["/nonexistent/bags"], "error: no bag or folder at /nonexistent/bags"),
    ("sparsevideonav_ros.tools.trial", ["show", "/nonexistent/trial.json"],
     "error: no trial file at /nonexistent/trial.json"),
])
def test_expected_failures_print_one_line_and_exit_2(module, arguments, message):
    result = run_cli(module, *arguments)
    assert result.returncode == 2 and result.stderr.strip() == message, result.stderr


def test_bad_trial_files_and_bags_without_trials_exit_2(known_bag, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TRIAL.to_json(), "task": "xyz"}))
    result = run_cli("sparsevideonav_ros.tools.trial", "metrics", str(known_bag), "--trial", str(bad),
                     "--out", str(tmp_path / "m.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {bad}: task must be one of ifn, bvn (ifn = "
                                                  f"instruction-following navigation; bvn = beyond-the-view "
                                                  f"navigation), got 'xyz'"]
    capsys.readouterr()
    assert trial_tool.main(["metrics", str(known_bag)]) == 2  # no trial.json beside it
    assert "no trial for bag" in capsys.readouterr().err
    goal_less = tmp_path / "goal_less.json"
    assert trial_tool.main(["define", str(goal_less), "--instruction", "x", "--task", "ifn", "--scene", "s",
                            "--index", "0"]) == 0
    assert trial_tool.main(["metrics", str(known_bag), "--trial", str(goal_less), "--out", str(tmp_path / "m")]) == 2
    assert "has no goal yet" in capsys.readouterr().err
    assert trial_tool.main(["define", str(goal_less), "--instruction", "x", "--task", "ifn", "--scene", "s",
                            "--index", "0"]) == 2  # exists already
    no_odometry = tmp_path / "no_odometry"
    writer = bags.open_writer(no_odometry)
    from std_msgs.msg import String
    writer.write(bags.add_connection(writer, "/instruction", "std_msgs/msg/String"), int(T0 * 1e9),
                 serialize(String(data="x")))
    writer.close()
    save_trial(TRIAL, no_odometry)
    assert trial_tool.main(["metrics", str(no_odometry)]) == 2
    assert "has no odometry: the metrics need the robot's poses" in capsys.readouterr().err
    not_a_bag = tmp_path / "notabag"
    not_a_bag.mkdir()
    save_trial(TRIAL, not_a_bag)
    assert trial_tool.main(["metrics", str(not_a_bag)]) == 2
    assert "is not a rosbag2 bag" in capsys.readouterr().err


def test_define_attach_and_metrics_commands(known_bag, tmp_path, capsys):
    bag = write_bag(tmp_path / "bag")
    trial_file = tmp_path / "trials" / "lab-ifn-0.json"
    assert trial_tool.main(["define", str(trial_file), "--instruction", "walk two metres", "--task", "IFN",
                            "--scene", "lab", "--index", "0", "--goal", "1.5", "0", "--radius", "1.5"]) == 0
    assert load_trial(trial_file) == TRIAL
    assert trial_tool.main(["attach", str(trial_file), str(bag)]) == 0
    other = tmp_path / "other.json"
    save_trial(Trial("other", "bvn", "lab", 1, Goal("start", 1.0, 0.0)), other)
    assert trial_tool.main(["attach", str(other), str(bag)]) == 2  # a different trial is attached already
    capsys.readouterr()
    assert trial_tool.main(["metrics", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "scripted in lab (IFN #0): SUCCESS" in out and "SPL 0.75" in out and "stop-and-go 1" in out
    assert "p50 100.0 ms" in out
    written = json.loads((bag / "metrics.json").read_text())
    assert written["success"] is True and written["trial_file"] == str(bag / "trial.json")
    assert trial_tool.main(["show", str(bag)]) == 0
    assert "valid trial (format version 1)" in capsys.readouterr().out


def test_metrics_and_tables_need_no_rclpy(known_bag, tmp_path):
    """The pure part and the metrics/compare commands run where rclpy is absent (an analysis machine)."""
    save_trial(TRIAL, tmp_path)
    code = (f"import sys\n"
            f"from sparsevideonav_ros.tools import compare, trial\n"
            f"from sparsevideonav_ros.trials import recorded\n"
            f"assert trial.main(['metrics', {str(known_bag)!r}, '--trial', {str(tmp_path / 'trial.json')!r}, "
            f"'--out', {str(tmp_path / 'm.json')!r}]) == 0\n"
            f"assert recorded.bag_start_warnings({str(known_bag)!r}) == []\n"
            f"assert 'rclpy' not in sys.modules, 'rclpy imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
