"""``python -m dap_ros`` is the ``dap-ros`` command."""
import sys

from dap_ros.cli.main import main

sys.exit(main())
