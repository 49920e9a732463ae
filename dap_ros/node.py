"""``python -m dap_ros.node [--ros-args ...]``: runs the depth node (same as ``depth_node``)."""
import sys

from dap_ros.ros.node import main

if __name__ == "__main__":
    sys.exit(main())
