"""dap_ros: metric 360-degree depth from one equirectangular camera, for ROS 2.

Importing the package pulls in neither torch nor rclpy; the sub-packages do what their names say:

- ``dap_ros.model``     the DAP network (DINOv3 ViT + two DPT heads) and checkpoint loading
- ``dap_ros.geometry``  equirectangular ray tables, points, 360-degree laser scans
- ``dap_ros.pipeline``  image -> network input -> metric range + range mask
- ``dap_ros.io``        image, depth, PLY and EXR files
- ``dap_ros.cli``       the ``dap-ros`` command
- ``dap_ros.ros``       the ROS 2 node (needs rclpy)
"""

__version__ = "0.1.0"
