"""Launch the dap_ros depth node.

    ros2 launch dap_ros depth.launch.py image:=/camera/image checkpoint:=/path/model.pth

Without launch/launch_ros (pip installs) the same thing is:

    depth_node --ros-args --params-file config/depth.yaml -r image:=/camera/image \
        -p checkpoint:=/path/model.pth

The params file holds every parameter; the launch arguments in ``PARAMETER_ARGUMENTS`` override
it only when given (an empty default means "keep the file's value"), so editing the YAML keeps
working when the launch file is used.

The node gets the package's Fast DDS profile (10 ms heartbeats for its multi-MB reliable outputs,
see docs/ros_node.md) for the installed Fast DDS: ``config/fastdds.xml`` in
``FASTDDS_DEFAULT_PROFILES_FILE`` (Fast DDS 3, Kilted) or ``config/fastdds2.xml`` in
``FASTRTPS_DEFAULT_PROFILES_FILE`` (Fast DDS 2, Humble and Jazzy), unless either variable is already
set in the environment or ``fastdds_profile:=''`` is given; ``fastdds_profile:=FILE`` names another.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dap_ros.ros import fastdds
from launch import LaunchDescription

PACKAGE = "dap_ros"
EXECUTABLE = "depth_node"
PARAMS_FILE = "config/depth.yaml"  # inside the package share directory
CONFIG = "config"  # the package share directory's folder of parameters and Fast DDS profiles

# Launch arguments that map 1:1 onto node parameters (the most used ones): name -> (type, help).
PARAMETER_ARGUMENTS = {
    "checkpoint": ("str", "path of the DAP weights (model.pth)"),
    "model_config": ("str", "architecture preset (vitl, tiny) or JSON file"),
    "device": ("str", "auto, cpu, cuda or cuda:N"),
    "precision": ("str", "fp32, fp16 or bf16"),
    "input_transport": ("str", "raw (image) or compressed (image/compressed)"),
    "frame_id": ("str", "frame of the outputs (empty: the image's frame_id)"),
    "max_range": ("float", "metres; farther ranges are +Inf"),
    "azimuth_offset_deg": ("float", "camera yaw relative to frame_id, degrees"),
    "input_projection": ("str", "erp or dual_fisheye (docs/cameras.md)"),
    "fisheye_calibration": ("str", "lens calibration YAML of a dual_fisheye camera"),
    "leveling": ("str", "none, static or imu"),
    "self_mask": ("str", "mask image of the robot in the camera's panorama"),
    "lifecycle": ("bool", "true: managed lifecycle node"),
}


def _typed(kind, text):
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text.strip().lower() in ("true", "1", "yes")
    return text  # strings stay strings: a checkpoint named "on" must not become a bool


def _node(context):
    overrides = {}
    for name, (kind, _) in PARAMETER_ARGUMENTS.items():
        text = LaunchConfiguration(name).perform(context)
        if text != "":
            overrides[name] = _typed(kind, text)
    use_sim_time = _typed("bool", LaunchConfiguration("use_sim_time").perform(context))
    image = LaunchConfiguration("image").perform(context)
    imu = LaunchConfiguration("imu").perform(context)
    profile = LaunchConfiguration("fastdds_profile").perform(context)
    env = fastdds.profile_environment(profile) if profile else {}
    node = Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=LaunchConfiguration("node_name").perform(context),
        namespace=LaunchConfiguration("namespace").perform(context),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file").perform(context),
            {"use_sim_time": use_sim_time, **overrides},
        ],
        remappings=[("image", image), ("image/compressed", image.rstrip("/") + "/compressed"), ("imu", imu)],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
        additional_env=env,
    )
    return [node]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), PARAMS_FILE])
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image",
                              description="input ERP image topic (compressed: this topic + /compressed)"),
        DeclareLaunchArgument("imu", default_value="imu",
                              description="sensor_msgs/Imu topic for leveling: imu (e.g. /imu/data)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("node_name", default_value="dap_depth", description="node name"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML parameter file (default: the package's config/depth.yaml)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (rosbag replay with --clock)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("fastdds_profile",
                              default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), CONFIG,
                                                                  fastdds.profile_name()]),
                              description=f"Fast DDS XML profile for the node ({fastdds.profiles_variable()}, "
                                          "unless a profiles file is set already); empty: none"),
    ]
    arguments += [
        DeclareLaunchArgument(name, default_value="", description=f"{text} (empty: from params_file)")
        for name, (_, text) in PARAMETER_ARGUMENTS.items()
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_node)])
