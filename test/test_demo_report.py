"""What `make demo` says (tools/demo.py): the bag's path when recording, the failing node's FATAL line,
progress while it runs. One short multi-process run (loopback DDS) whose policy node refuses its parameters."""
import os
import subprocess
import sys
from pathlib import Path

from sparsevideonav_ros import stack
from sparsevideonav_ros.tools import demo

REPO = Path(__file__).resolve().parent.parent


def test_failure_lines_show_the_fatal_line_else_the_end_of_the_log(tmp_path):
    (tmp_path / "policy_node.log").write_text(
        "[INFO] [1.0] [policy_node]: policy 'sparsevideonav' loading\n"
        "[FATAL] [2.0] [policy_node]: refusing to start: sparsevideonav.checkpoint /x is not a folder\n")
    (tmp_path / "camera_node.log").write_text("Traceback (most recent call last):\n  File x\nKeyError: 'boom'\n\n")
    (tmp_path / "controller_node.log").write_text("[INFO] [1.0] [controller_node]: up\n")
    lines = demo.failure_lines(tmp_path, {"policy_node": 2, "camera_node": 1})
    assert lines[0] == f"policy_node exited with code 2 (log: {tmp_path / 'policy_node.log'}):"
    assert lines[1] == "  [FATAL] [2.0] [policy_node]: refusing to start: sparsevideonav.checkpoint /x is not a folder"
    assert lines[2].startswith("camera_node exited with code 1") and lines[-1] == "  KeyError: 'boom'"
    assert not any("controller_node" in line for line in lines)
    assert demo.failure_lines(tmp_path, {}) == [  # nobody exited, but a FATAL line is still worth showing
        "policy_node: [FATAL] [2.0] [policy_node]: refusing to start: sparsevideonav.checkpoint /x is not a folder"]


def test_a_failed_recorded_demo_prints_the_bag_and_the_fatal_line(tmp_path):
    env = stack.loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "sparsevideonav_ros.tools.demo", "--out", str(tmp_path),
                             "--duration", "20", "-p", "no_such_parameter=1", "record:=true"],
                            env=env, capture_output=True, text=True, timeout=240)
    out = result.stdout
    assert result.returncode == 1, out[-3000:] + result.stderr[-3000:]
    (recording,) = [line for line in out.splitlines() if line.startswith("recording the run to ")]
    bag = Path(recording.split(" to ", 1)[1])
    assert f"bag: {bag}" in out.splitlines() and bag.parent.parent == tmp_path.resolve()
    assert (bag / "metadata.yaml").is_file()  # the recorder closed it
    lines = out.splitlines()
    failed = [i for i, line in enumerate(lines) if line.startswith("policy_node exited with code 2")]
    assert failed, out
    fatal = lines[failed[0] + 1]
    assert "[FATAL]" in fatal and "no_such_parameter" in fatal, out
    assert lines[-1].startswith("DEMO FAILED: run folder ")
    assert "demo scripted:" in result.stderr  # the progress line


def test_bad_demo_arguments_are_one_line_with_exit_2(tmp_path):
    assert demo.main(["--out", str(tmp_path), "-p", "noequals"]) == 2
    assert demo.main(["--out", str(tmp_path), "robot"]) == 2  # not name:=value
