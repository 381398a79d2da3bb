"""ROS 2 adapters over the core: message conversion, QoS, parameters, diagnostics, nodes."""
