"""`colcon build` installs the package the way `ros2 run` / `ros2 launch` expect it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path


from sparsevideonav_ros import stack

REPO = Path(__file__).resolve().parent.parent


def test_colcon_build_installs_nodes_launch_files_and_params(tmp_path):
    # colcon is in requirements.txt: a venv without it is a broken install, not a reason to skip.
    assert shutil.which("colcon", path=str(Path(sys.executable).parent)), \
        f"colcon is missing from {Path(sys.executable).parent}: pip install -r requirements.txt"
    source = tmp_path / "src" / stack.PACKAGE
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "install", "log",
                                                                "__pycache__", ".pytest_cache"))
    colcon = str(Path(sys.executable).parent / "colcon")
    result = subprocess.run([colcon, "build", "--base-paths", "src"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / stack.PACKAGE
    for node in stack.NODES.values():
        assert (prefix / "lib" / stack.PACKAGE / node.executable).is_file()
    share = prefix / "share" / stack.PACKAGE
    for name in stack.LAUNCH_FILES:
        assert (share / "launch" / f"{name}.launch.py").is_file()
    for node in stack.NODES.values():
        assert (share / "params" / node.params_file).is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / stack.PACKAGE).is_file()
    # The installed package finds its share folder through the ament index, as under `ros2 launch`.
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), PYTHONPATH=str(site))
    probe = ("from sparsevideonav_ros import stack; "
             "print(stack.share_dir()); print(stack.plan_processes('bringup')[0].params_files[0])")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    share_printed, params_printed = out.stdout.split()
    assert Path(share_printed).resolve() == share.resolve()
    assert Path(params_printed).is_file()
