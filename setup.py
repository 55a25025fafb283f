"""ament_python package: colcon installs launch/ and params/ into share/ and one
console script per node into lib/sparsevideonav_ros (what `ros2 run` / `ros2 launch` look up)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sparsevideonav_ros"
# Executable names must match stack.NODES (a test checks it).
NODE_EXECUTABLES = ["camera_node", "policy_node", "controller_node", "go2_bridge_node"]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/params", glob("params/*.yaml")),
        # RViz config and Foxglove layout (README: "Seeing what the robot does")
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/foxglove", glob("foxglove/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="sparsevideonav_ros maintainers",
    maintainer_email="maintainers@sparsevideonav-ros.invalid",
    description="Vision-language navigation stack for the Unitree Go2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {PACKAGE}.nodes.{name}:main" for name in NODE_EXECUTABLES]
        + [f"svn_launch = {PACKAGE}.tools.launch:main", f"svn_demo = {PACKAGE}.tools.demo:main"],
    },
)
