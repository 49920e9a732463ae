"""``dap-ros demo``: the whole system on a bundled synthetic 360° sequence (docs/demo.md).

The real depth node runs in its own process with the embedded demo model (or a given checkpoint);
a bundled sequence (dap_ros/assets/demo_sequence/, a camera moving through a generated room, with
ground truth) is played through ROS 2 topics; the outputs are scored and drawn into a report folder.
"""
from dap_ros.demo.runner import run_demo

__all__ = ["run_demo"]
