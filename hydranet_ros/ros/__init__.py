"""ROS 2 adapters over the core: message conversion, QoS, parameters, diagnostics, nodes."""

from ..entry_points import guard_run_as_module

guard_run_as_module()
