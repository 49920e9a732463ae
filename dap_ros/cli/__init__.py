"""The ``dap-ros`` command line; one module per sub-command."""
