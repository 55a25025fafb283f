"""setup.py installs one console script per node plus launch/ and params/; the message packages the
stack uses are dependencies in package.xml and requirements.txt.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import runpy
from pathlib import Path

import pytest

from stack_helpers import REPO
from sparsevideonav_ros import stack


@pytest.fixture
def setup_kwargs(monkeypatch) -> dict:
    import setuptools
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    assert captured, "setup.py did not call setuptools.setup"
    return captured


def module_defines_main(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} not found"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


def test_setup_installs_one_console_script_per_node(setup_kwargs):
    scripts = {}
    for line in setup_kwargs["entry_points"]["console_scripts"]:
        name, _, target = (part.strip() for part in line.partition("="))
        assert name not in scripts, f"duplicate console script {name}"
        scripts[name] = target
    for node_name, spec in stack.NODES.items():
        assert scripts.get(spec.executable) == f"{stack.PACKAGE}.nodes.{node_name}:main", node_name
        assert spec.module == f"{stack.PACKAGE}.nodes.{node_name}"
        module = importlib.import_module(spec.module)
        assert callable(getattr(module, "main", None)), f"{spec.module} has no main()"
        assert module.NAME == node_name
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert function == "main" and module_defines_main(module), f"console script {name} -> {target}"
    assert setup_kwargs["name"] == stack.PACKAGE


def test_setup_installs_launch_and_params(setup_kwargs):
    data_files = {destination: set(files) for destination, files in setup_kwargs["data_files"]}
    share = f"share/{stack.PACKAGE}"
    assert data_files[f"{share}/launch"] == {f"launch/{name}.launch.py" for name in stack.LAUNCH_FILES}
    assert data_files[f"{share}/params"] == {f"params/{spec.params_file}" for spec in stack.NODES.values()}
    assert "package.xml" in data_files[share]
    assert data_files["share/ament_index/resource_index/packages"] == {f"resource/{stack.PACKAGE}"}
    assert (REPO / "resource" / stack.PACKAGE).is_file()


def test_message_packages_are_dependencies():
    packages = {t.msg_type.split("/")[0] for t in stack.TOPICS.values()}
    packages |= {s.srv_type.split("/")[0] for s in stack.SERVICES.values()}
    package_xml = (REPO / "package.xml").read_text(encoding="utf-8")
    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8")
    for package in sorted(packages):
        assert f"<exec_depend>{package}</exec_depend>" in package_xml, package
        assert re.search(rf"^ros-\w+-{package.replace('_', '-')}\b", requirements, re.MULTILINE), package
