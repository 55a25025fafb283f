"""The main job (`make demo`) end to end: exit 0, a run folder with summary and plot."""
import json
import os
import subprocess
import sys
from pathlib import Path

from sparsevideonav_ros import stack

REPO = Path(__file__).resolve().parent.parent


def test_demo_drives_the_square_and_writes_the_run_folder(tmp_path):
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "sparsevideonav_ros.tools.demo", "--out", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("demo finished: run folder ")][-1]
    run_dir = Path(line.split("run folder ", 1)[1])
    assert run_dir.parent == tmp_path.resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["policy_status"]["state"] == "done"
    assert summary["frames_in"] > 50 and summary["plans_out"] > 20 and summary["cmd_vel_nonzero"] > 50
    assert summary["robot_start_pose"] == [0.0, 0.0, 0.0]
    # a 1 m square: about 4 m driven, back near the start
    assert 3.5 < summary["robot_path_length_m"] < 5.0
    assert summary["robot_displacement_m"] < 0.2
    assert set(summary["plan_latency_ms"]) == {"p50", "p95", "max", "count"}
    assert all(code == 0 for code in summary["node_exit_codes"].values())
    assert (run_dir / "trajectory.png").stat().st_size > 10_000
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == sorted(f"{n}.log" for n in stack.NODES)
