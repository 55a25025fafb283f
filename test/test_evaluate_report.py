"""What the evaluation report says (tools/evaluate.py): units, counts, exit status, progress, the overlay.

No ROS graph: bags come from test_evaluate.write_episode_bag (rosbags writer), policies are small test ones.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from sparsevideonav_ros import bags
from sparsevideonav_ros.core import images
from sparsevideonav_ros.core.progress import Progress, human_bytes, human_seconds, loading
from sparsevideonav_ros.policies import registry
from sparsevideonav_ros.policies.base import Plan
from sparsevideonav_ros.policies.scripted.policy import ScriptedPolicy
from sparsevideonav_ros.tools import evaluate
from test_evaluate import T0, read_video, serialize, write_episode_bag


@pytest.fixture(scope="module")
def episode_bag(tmp_path_factory) -> Path:
    return write_episode_bag(tmp_path_factory.mktemp("bags") / "episode", seconds=3.0)


class ActionPolicy(ScriptedPolicy):
    """Test policy with a discrete action, like JanusVLN: answers 'turn left' (a 15 deg turn) every frame."""

    name = "test_action"

    def observe(self, observation) -> None:
        self._latest = observation

    def plan(self) -> Plan:
        self.last_answer = "The next action is turn left 15 degrees."
        return Plan(stamp=self._latest.stamp, waypoints=np.array([[0.0, 0.0, np.radians(15.0)]]),
                    timings_s={"llm_prompt_s": 0.002})


@pytest.fixture
def action_policy(monkeypatch):
    monkeypatch.setitem(registry.POLICIES, "test_action", f"{__name__}:ActionPolicy")
    return "test_action"


# -- progress ----------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_has_count_bar_and_eta_and_is_throttled_in_a_log():
    clock, stream = FakeClock(), io.StringIO()  # StringIO is no tty: a log file
    progress = Progress("evaluate", total=200, unit="frames", stream=stream, every_s=5.0, clock=clock)
    clock.now += 10.0
    progress.update(50, note="12 steps")
    # 50 frames in 10 s: 150 left take 30 s
    assert progress.eta_s() == pytest.approx(30.0)
    assert stream.getvalue().splitlines() == [
        "evaluate: [#####...............]  25% 50/200 frames 10 s elapsed ETA 30 s (12 steps)"]
    for done in range(51, 60):  # within 5 s of the last line: nothing new
        clock.now += 0.1
        progress.update(done)
    assert progress.lines == 1
    clock.now += 5.0
    progress.update(100)
    assert progress.lines == 2
    progress.finish("done")
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("evaluate: [##########..........]  50% 100/200 frames") and "ETA" not in last


def test_progress_without_a_total_counts_only():
    stream = io.StringIO()
    progress = Progress("demo", stream=stream, clock=FakeClock())
    progress.update(3, force=True)
    assert stream.getvalue().strip() == "demo: 3 0.0 s elapsed" and progress.eta_s() is None


def test_human_sizes_and_durations():
    assert human_bytes(2.8e9) == "2.8 GB" and human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KB"
    assert human_seconds(4.25) == "4.2 s" and human_seconds(45) == "45 s" and human_seconds(130) == "2 min 10 s"
    assert human_seconds(4000) == "1 h 06 min"


def test_loading_says_what_loads_its_size_and_how_long(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 2500)
    stream = io.StringIO()
    with loading("sparsevideonav: loading backbone", tmp_path, stream=stream):
        pass
    first, second = stream.getvalue().splitlines()
    assert first == f"sparsevideonav: loading backbone (2.5 KB) from {tmp_path}..."
    assert second.startswith("sparsevideonav: loading backbone: done in ")
    stream = io.StringIO()
    with pytest.raises(OSError), loading("janusvln: loading weights", stream=stream):
        raise OSError("disk gone")
    assert stream.getvalue().splitlines()[-1].startswith("janusvln: loading weights: failed after ")


def test_evaluation_shows_progress_of_the_frames_read(episode_bag, tmp_path, capsys):
    assert evaluate.main([str(episode_bag), "-p", "waypoints=[1.0, 0.0, 0.0]", "--out", str(tmp_path / "r"),
                          "--no-video"]) == 0
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if line.startswith("evaluate scripted: [")]
    assert progress and "45/45 frames" in progress[-1] and "100%" in progress[-1], err


# -- units, counts, exit status ------------------------------------------------------------------

def test_timings_are_milliseconds_under_keys_that_say_so(episode_bag, tmp_path, action_policy):
    summary = evaluate.evaluate(episode_bag, action_policy, tmp_path / "r", write_video=False)
    steps = json.loads((tmp_path / "r" / "steps.json").read_text())
    assert steps and all(s["timings_ms"] == {"llm_prompt_ms": pytest.approx(2.0)} for s in steps)
    latency = json.loads((tmp_path / "r" / "latency.json").read_text())
    assert set(latency["timings_ms"]) == {"llm_prompt_ms"} and "llm_prompt_s_ms" not in latency["per_step"][0]
    assert evaluate.milliseconds_key("action_head_s") == "action_head_ms"
    # the chosen action of a discrete-action policy is in every step that planned
    assert summary["plans"] == len(steps)
    assert {s["action"] for s in steps} == {"The next action is turn left 15 degrees."}


def step(index: int, stamp: float, waypoints, new: bool = True) -> evaluate.Step:
    return evaluate.Step(index, stamp, "ok" if len(waypoints) else "done", np.asarray(waypoints, float).reshape(-1, 3),
                         1.0, {}, "", None, new_plan=new)


def test_comparison_counts_planned_frames_once_on_both_sides():
    """A policy repeats its last plan under the same stamp between planning frames (SparseVideoNav: 3 of 4
    frames), and the recorded node re-published it: matched frames can never exceed the recorded ones."""
    forward = [[1.0, 0.0, 0.0]]
    steps = [step(0, T0, forward), step(1, T0, forward, new=False), step(2, T0, forward, new=False),
             step(3, T0 + 1.0, forward), step(4, T0 + 1.0, forward, new=False)]
    recorded = [(T0, np.array(forward)), (T0, np.array(forward)), (T0, np.array(forward)),
                (T0 + 1.0, np.array([[1.0, 0.1, 0.0]]))]
    result = evaluate.compare_with_recorded(steps, recorded)
    assert result["recorded_plans"] == 4 and result["recorded_plan_frames"] == 2
    assert result["evaluated_plan_frames"] == 2
    assert result["matched_frames"] == result["recorded_plans_in_span"] == 2
    assert result["compared_waypoints"] == 2 and result["median_position_difference_m"] == pytest.approx(0.05)
    assert evaluate.waypoint_comparison_text(result).startswith("median waypoint difference 0.050 m")


def test_comparison_says_why_no_waypoints_were_compared():
    steps = [step(0, T0, [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), step(1, T0 + 0.25, [])]
    recorded = [(T0, np.array([[1.0, 0.0, 0.0]])), (T0 + 0.25, np.array([[1.0, 0.0, 0.0]]))]
    result = evaluate.compare_with_recorded(steps, recorded)
    assert result["compared_waypoints"] == 0 and result["unequal_waypoint_counts"] == 1
    text = evaluate.waypoint_comparison_text(result)
    assert "- m" not in text and "different number of waypoints" in text
    assert "no evaluated frame" in evaluate.waypoint_comparison_text(
        evaluate.compare_with_recorded(steps, [(T0 + 5.0, np.array([[1.0, 0.0, 0.0]]))]))


def test_late_recording_is_warned_about(episode_bag, tmp_path, capsys):
    """The generated bag's first odometry already moves at 0.25 m/s: the recorder came late."""
    summary = evaluate.evaluate(episode_bag, "scripted", tmp_path / "r", write_video=False)
    assert summary["bag_start_warnings"] and "after motion began" in summary["bag_start_warnings"][0]
    assert f"warning: {summary['bag_start_warnings'][0]}" in capsys.readouterr().err


def run_cli(capsys, *args) -> tuple[int, str]:
    code = evaluate.main([str(a) for a in args] + ["--no-video"])
    return code, capsys.readouterr().err


def test_bad_params_and_missing_checkpoints_are_one_line_with_exit_2(episode_bag, tmp_path, capsys):
    bad = tmp_path / "site.yaml"
    bad.write_text("/**/policy_node:\n  ros__parameters:\n    scripted: [\n")
    code, err = run_cli(capsys, episode_bag, "--params-file", bad, "--out", tmp_path / "r")
    assert code == 2 and "Traceback" not in err, err
    (line,) = [l for l in err.splitlines() if l.startswith("error:")]
    assert "not valid YAML" in line and "line 4" in line
    code, err = run_cli(capsys, episode_bag, "-p", "waypoints=[1.0,", "--out", tmp_path / "r")
    assert code == 2 and "-p waypoints=[1.0,: the value is not valid YAML" in err and "Traceback" not in err
    code, err = run_cli(capsys, episode_bag, "--policy", "sparsevideonav", "-p", f"checkpoint={tmp_path / 'none'}",
                        "--out", tmp_path / "r")
    assert code == 2 and "Traceback" not in err, err
    assert f"error: policy 'sparsevideonav': sparsevideonav.checkpoint {tmp_path / 'none'} is not a folder" in err
    assert not (tmp_path / "r").exists()


# -- the overlay ---------------------------------------------------------------------------------

def overlay_of(step_: evaluate.Step, rgb: np.ndarray, recorded=None, **episode) -> tuple[np.ndarray, list[str]]:
    renderer = evaluate.OverlayRenderer(0.35)
    renderer.add(step_, rgb)
    texts: list[str] = []
    original = evaluate.put_text
    try:
        evaluate.put_text = lambda image, text, *a, **k: (texts.append(text), original(image, text, *a, **k))
        image = renderer.render(step_, evaluate.Episode(kind="bag", path="", **episode), recorded, "test_action")
    finally:
        evaluate.put_text = original
    return image, texts


def test_overlay_text_sits_in_a_band_above_the_frame_not_on_it():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    plan = step(0, T0, [])  # a stop: nothing drawn on the ground
    plan.error = "policy failed: boom"
    image, texts = overlay_of(plan, rgb)
    band = evaluate.OverlayRenderer(0.35).band_px
    assert image.shape == (band + 240, 320, 3)
    # the clip's own top rows (where cameras burn their time in) are as they came, under no text
    assert np.array_equal(image[band:band + 100], images.decode_jpeg(plan.frame_jpeg)[:100])
    assert any("boom" in t for t in texts)


def test_overlay_shows_the_chosen_action_and_the_recorded_plan_beside_the_evaluated_one():
    rgb = np.full((240, 320, 3), 128, np.uint8)
    evaluated = step(0, T0, [[1.0, 0.2, 0.0]])
    evaluated.action = "turn left"
    recorded = np.array([[1.0, -0.3, 0.0]])  # to the right
    image, texts = overlay_of(evaluated, rgb, recorded)
    assert "action: turn left" in texts and any("cyan: recorded" in t for t in texts)
    band = evaluate.OverlayRenderer(0.35).band_px
    intrinsics = evaluate.Intrinsics.from_fov(320, 240, 90.0)
    for waypoints, colour in ((recorded, evaluate.CYAN), (evaluated.waypoints, evaluate.ORANGE)):
        (u, v), = evaluate.project_ground(waypoints, intrinsics, 0.35)
        window = image[band + v - 8:band + v + 9, u - 8:u + 9].astype(int)
        distance = np.abs(window - np.array(colour)).sum(axis=2)
        assert distance.min() < 60, (colour, u, v)


def write_bag_with_recorded_plans(folder: Path) -> Path:
    """The episode bag plus a recorded policy/path for every 4th frame: 1 m ahead and 0.3 m right."""
    from std_msgs.msg import Header

    from sparsevideonav_ros.nodes import common, convert

    source = write_episode_bag(folder / "source", seconds=2.0)
    reader = bags.open_bag(source)
    writer = bags.open_writer(folder / "with_plans")
    connections = {}
    for connection, bag_ns, data in bags.messages(reader, reader.connections):
        if connection.topic not in connections:
            connections[connection.topic] = bags.add_connection(writer, connection.topic, connection.msgtype)
        writer.write(connections[connection.topic], bag_ns, data)
        if connection.topic == "/camera/image_raw/compressed":
            msg = bags.decode(data, connection.msgtype, connection.topic)
            stamp = common.stamp_to_seconds(msg.header.stamp)
            if round((stamp - T0) * 15) % 4 == 0:  # the 15 FPS frames on a 4 FPS-like grid
                path = convert.path_msg_from_waypoints(np.array([[1.0, -0.3, 0.0]]),
                                                       Header(stamp=msg.header.stamp, frame_id="base_link"))
                if "/policy/path" not in connections:
                    connections["/policy/path"] = bags.add_connection(writer, "/policy/path", "nav_msgs/msg/Path")
                writer.write(connections["/policy/path"], bag_ns + 50_000_000, serialize(path))
    reader.close()
    writer.close()
    return folder / "with_plans"


def test_overlay_video_draws_the_recorded_plans_of_a_bag(tmp_path, action_policy):
    bag = write_bag_with_recorded_plans(tmp_path)
    summary = evaluate.evaluate(bag, action_policy, tmp_path / "r")
    versus = summary["versus_recorded"]
    assert versus["matched_frames"] > 3 and versus["matched_frames"] <= versus["recorded_plans_in_span"]
    frames = read_video(tmp_path / "r" / "overlay.mp4")
    band = evaluate.OverlayRenderer(0.35).band_px
    assert frames[0].shape == (band + 240, 320, 3)
    (u, v), = evaluate.project_ground(np.array([[1.0, -0.3, 0.0]]), evaluate.Intrinsics.from_fov(320, 240, 90.0), 0.35)
    cyan_bgr = np.array(evaluate.CYAN[::-1])
    steps = json.loads((tmp_path / "r" / "steps.json").read_text())
    recorded_keys = {round((T0 + i * 4 / 15) * 1e6) for i in range(10)}
    drawn = [index for index, s in enumerate(steps) if round(s["stamp"] * 1e6) in recorded_keys]
    assert drawn
    for index in drawn:
        window = frames[index][band + v - 8:band + v + 9, u - 8:u + 9].astype(int)
        assert np.abs(window - cyan_bgr).sum(axis=2).min() < 90, index


# -- plots ---------------------------------------------------------------------------------------

def test_trajectory_panels_keep_equal_axes_without_squashing_a_straight_run(tmp_path):
    """A 4 m straight run (0.02 m sideways) gets a square window: equal metres on both axes, full height."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    poses = np.stack([np.linspace(0.0, 4.0, 50), np.linspace(0.0, 0.02, 50), np.zeros(50)], axis=1)
    ax.plot([1.0, 2.0], [0.0, 0.1])  # a plan drawn before the odometry stays in the window
    evaluate.draw_odometry(ax, poses, "driven", "test")
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x1 - x0 == pytest.approx(y1 - y0) and x1 - x0 >= 4.0
    assert x0 < 0.0 and x1 > 4.0 and y0 < 0.0 < 0.1 < y1
    assert ax.get_aspect() == 1.0
    fig.canvas.draw()
    box = ax.get_window_extent()
    assert box.height == pytest.approx(box.width, rel=0.02)  # a square panel, not a strip
    plt.close(fig)


def test_demo_trajectory_png_of_a_straight_run(tmp_path):
    import cv2

    from sparsevideonav_ros.tools import demo
    from sparsevideonav_ros.tools.monitor import Record

    record = Record()
    for i in range(50):
        pose = np.array([i * 0.08, 0.0, 0.0])
        record.odom.append((float(i), float(i), pose, np.zeros(3)))
        record.plans.append((float(i), float(i), "base_link", np.array([[0.5, 0.0, 0.0]])))
    demo.plot_trajectory(record, tmp_path / "trajectory.png")
    image = cv2.imread(str(tmp_path / "trajectory.png"))
    # the axes frame (black spines) is square: find the rows / columns that are dark over half the image
    dark = image.astype(int).sum(axis=2) < 200
    rows = np.where(dark.sum(axis=1) > 0.5 * image.shape[1])[0]
    cols = np.where(dark.sum(axis=0) > 0.5 * image.shape[0])[0]
    assert len(rows) >= 2 and len(cols) >= 2, (rows, cols)
    height, width = rows.max() - rows.min(), cols.max() - cols.min()
    assert height == pytest.approx(width, rel=0.05), (height, width)


def test_plans_png_draws_the_recorded_plans_of_the_evaluated_frames(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, path, **kw: saved.update(fig=fig))
    steps = [step(0, T0, [[1.0, 0.2, 0.0]]), step(1, T0 + 0.25, [[1.0, 0.2, 0.0]])]
    episode = evaluate.Episode(kind="bag", path="", recorded_plans=[(T0, np.array([[1.0, -0.3, 0.0]])),
                                                                      (T0 + 9.0, np.array([[2.0, 0.0, 0.0]]))])
    evaluate.plot_plans(steps, episode, tmp_path / "plans.png", "test")
    (ax,) = saved["fig"].axes
    recorded = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(recorded) == 1  # the plan of an evaluated frame, not the one at +9 s
    assert list(recorded[0].get_xdata()) == [0.0, 0.3] and list(recorded[0].get_ydata()) == [0.0, 1.0]
