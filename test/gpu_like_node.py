"""hydranet_node whose CPU torch engine returns its outputs as a CUDA engine does: made by the
device-output code and packed into one buffer with room around each output
(``device_outputs.pack``), so that the node publishes them serialized in place. For the
tests of that path through a real node in its own process (CUDA engines do this by default;
nothing in the package makes a CPU engine do it)."""

import sys

import hydranet_ros.predictor as predictor_module
from hydranet_ros.engines.torch_engine import TorchEngine
from hydranet_ros.ros.node import main

real_create_engine = predictor_module.create_engine


def create_engine(*args, **kwargs):
    engine = real_create_engine(*args, **kwargs)
    if isinstance(engine, TorchEngine):
        engine.device_postprocess = True
    return engine


predictor_module.create_engine = create_engine
sys.exit(main())
