"""dap_ros: an ament_python ROS 2 package that is also a plain pip-installable Python package."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dap_ros"

# Core needs: the model, the image pipeline and the CLI. torch is a range, not a pin: Jetson and
# desktop GPU users bring their own CUDA build (the dev environment pins the CPU wheel instead).
INSTALL_REQUIRES = [
    "numpy>=1.24",
    "torch>=2.4",
    "pillow>=10",
    "safetensors>=0.4",
    "OpenEXR>=3.2",
    "tqdm>=4.60",
    "pyyaml>=6",
]

ROS = [
    "ros-rclpy[fastrtps]",
    "ros-sensor-msgs",
    "ros-std-msgs",
    "ros-geometry-msgs",
    "ros-diagnostic-msgs",
    "ros-lifecycle-msgs",
]

EXTRAS = {
    "ros": ROS,
    "onnx": ["onnx>=1.18", "onnxruntime>=1.18", "onnxscript>=0.5", "onnx-ir>=0.1"],
    "eval": ["rosbags>=0.11,<0.12", "matplotlib>=3.7", "opencv-python-headless>=4.8,<5"],
    "train": ["matplotlib>=3.7", "tensorboard>=2.14"],
    "dev": ["pytest>=8", "pytest-timeout>=2.3", "matplotlib>=3.7"],
    # compiled point-cloud kernel for the node (dap_ros/ros/cloud_jit.py); numpy path without it
    "fast": ["numba>=0.61"],
}

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Metric 360-degree depth for ROS 2 from one equirectangular camera (DAP model)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["presets/*.json", "assets/*", "assets/embedded/*", "assets/demo_sequence/*",
                            "assets/demo_sequence/rgb/*", "assets/demo_sequence/gt/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("dap_ros/assets/fastdds*.xml")),
    ],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "dap-ros = dap_ros.cli.main:main",
            "depth_node = dap_ros.ros.node:main",
        ],
    },
)
