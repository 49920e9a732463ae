"""launch/depth.launch.py and config/depth.yaml agree with the node (launch is not on PyPI: the
launch file is checked with ast, then run against minimal stand-ins of the launch API)."""
from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest
import yaml
from ros_helpers import REPO

from dap_ros.ros import params as prm

LAUNCH = REPO / "launch" / "depth.launch.py"
CONFIG = REPO / "config" / "depth.yaml"


def _constants(tree: ast.Module) -> dict:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def test_launch_file_names_real_executable_params_file_and_parameters():
    tree = ast.parse(LAUNCH.read_text(), str(LAUNCH))
    consts = _constants(tree)
    assert consts["PACKAGE"] == "dap_ros"
    assert consts["EXECUTABLE"] == "depth_node"
    assert f'"{consts["EXECUTABLE"]} = dap_ros.ros.node:main"' in (REPO / "setup.py").read_text()
    assert (REPO / consts["PARAMS_FILE"]).is_file()
    for name, (kind, _) in consts["PARAMETER_ARGUMENTS"].items():
        assert name in prm.SPEC_BY_NAME, f"launch argument {name} is not a node parameter"
        assert kind == type(prm.SPEC_BY_NAME[name].default).__name__, name
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"Node", "DeclareLaunchArgument", "LaunchDescription", "OpaqueFunction"} <= calls
    declared = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "DeclareLaunchArgument"
                and n.args and isinstance(n.args[0], ast.Constant)}
    assert {"image", "namespace", "params_file", "use_sim_time"} <= declared


def _fake_launch_modules(monkeypatch) -> dict:
    """Record-only stand-ins for the few launch / launch_ros names the launch file uses."""
    made: dict = {"nodes": []}

    class Recorder:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class LaunchConfiguration(Recorder):
        def perform(self, context):
            return context[self.args[0]]

    class Node(Recorder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made["nodes"].append(self)

    modules = {
        "launch": {"LaunchDescription": Recorder},
        "launch.actions": {"DeclareLaunchArgument": Recorder, "OpaqueFunction": Recorder},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration, "PathJoinSubstitution": Recorder},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Node},
        "launch_ros.substitutions": {"FindPackageShare": Recorder},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    return made


def test_launch_file_builds_the_node_with_overrides_only_when_given(monkeypatch):
    made = _fake_launch_modules(monkeypatch)
    namespace: dict = {}
    exec(compile(LAUNCH.read_text(), str(LAUNCH), "exec"), namespace)
    description = namespace["generate_launch_description"]()
    actions = description.args[0]
    defaults = {a.args[0]: a.kwargs["default_value"] for a in actions if "default_value" in a.kwargs}
    opaque = actions[-1]
    context = {k: v for k, v in defaults.items() if isinstance(v, str)}
    context.update(params_file=str(CONFIG), max_range="20", lifecycle="true", checkpoint="/w/model.pth",
                   fastdds_profile="")
    opaque.kwargs["function"](context)
    node = made["nodes"][-1]
    assert node.kwargs["executable"] == "depth_node" and node.kwargs["package"] == "dap_ros"
    params_file, overrides = node.kwargs["parameters"]
    assert params_file == str(CONFIG)
    assert overrides == {"use_sim_time": False, "max_range": 20.0, "lifecycle": True, "checkpoint": "/w/model.pth"}
    assert ("image", "/camera/image") in node.kwargs["remappings"]
    assert ("image/compressed", "/camera/image/compressed") in node.kwargs["remappings"]
    prm.NodeParams.from_values({k: v for k, v in overrides.items() if k in prm.SPEC_BY_NAME})


def _launch_actions(monkeypatch) -> tuple[list, dict]:
    made = _fake_launch_modules(monkeypatch)
    namespace: dict = {}
    exec(compile(LAUNCH.read_text(), str(LAUNCH), "exec"), namespace)
    return namespace["generate_launch_description"]().args[0], made


def _run_launch_file(monkeypatch, **arguments: str):
    actions, made = _launch_actions(monkeypatch)
    context = {a.args[0]: a.kwargs["default_value"] for a in actions if "default_value" in a.kwargs}
    context.update(arguments)
    actions[-1].kwargs["function"](context)
    return made["nodes"][-1]


def test_launch_file_gives_the_node_the_shipped_fastdds_profile(monkeypatch):
    """The installed Fast DDS's profile in the variable it reads; a user's own choice wins."""
    from dap_ros.ros import fastdds

    for name in fastdds.VARIABLES.values():
        monkeypatch.delenv(name, raising=False)
    actions, _ = _launch_actions(monkeypatch)
    default = next(a.kwargs["default_value"] for a in actions if a.args[0] == "fastdds_profile")
    assert default.args[0][1:] == ["config", fastdds.profile_name()]  # share/dap_ros/config/NAME
    # the package installs every shipped profile there
    assert "dap_ros/assets/fastdds*.xml" in (REPO / "setup.py").read_text()
    profile = str(fastdds.profile_path())
    node = _run_launch_file(monkeypatch, params_file=str(CONFIG), fastdds_profile=profile)
    assert node.kwargs["additional_env"] == {fastdds.profiles_variable(): profile}
    assert Path(profile).is_file() and Path(profile).name == fastdds.profile_name()
    node = _run_launch_file(monkeypatch, params_file=str(CONFIG), fastdds_profile="")
    assert node.kwargs["additional_env"] == {}
    for variable in fastdds.VARIABLES.values():  # the user's own choice wins, in either variable
        monkeypatch.setenv(variable, "/mine.xml")
        node = _run_launch_file(monkeypatch, params_file=str(CONFIG), fastdds_profile=profile)
        assert node.kwargs["additional_env"] == {}
        monkeypatch.delenv(variable)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def test_config_file_lists_every_parameter_with_its_default():
    data = yaml.safe_load(CONFIG.read_text())
    values = _flatten(data["/**"]["ros__parameters"])
    assert set(values) == set(prm.SPEC_BY_NAME), set(values) ^ set(prm.SPEC_BY_NAME)
    for name, value in values.items():
        assert value == prm.SPEC_BY_NAME[name].default and type(value) is type(prm.SPEC_BY_NAME[name].default), name
    prm.NodeParams.from_values(values)


def test_docs_describe_every_parameter():
    docs = (REPO / "docs" / "ros_node.md").read_text()
    missing = [name for name in prm.SPEC_BY_NAME if f"`{name}`" not in docs]
    assert not missing, f"docs/ros_node.md does not document {missing}"


@pytest.mark.parametrize("values,fragment", [
    ({"max_range": 100}, None),  # an int for a float parameter is fine (YAML "100")
    ({"max_range": 0.0}, "max_range"),
    ({"points.stride": 2.0}, "must be an integer"),
    ({"device": "gpu"}, "device"),
    ({"scan.range_min": 5.0, "scan.range_max": 1.0}, "scan.range_max"),
    ({"precision": "FP16"}, None),  # choices are case-insensitive
])
def test_parameter_validation_rules(values, fragment):
    if fragment is None:
        prm.NodeParams.from_values(values)
    else:
        with pytest.raises(prm.ConfigError, match=fragment.replace(".", r"\.")):
            prm.NodeParams.from_values(values)
