"""hydranet_node whose CPU torch engine returns its outputs as a CUDA engine does: made by the
device-output code and packed into one buffer with room around each output
(``device_outputs.pack``), so that the node publishes them serialized in place. For the
tests of that path through a real node in its own process (CUDA engines do this by default;
nothing in the package makes a CPU engine do it).

With ``GPU_LIKE_MEASURED=1`` the engine is also chosen as precision ``auto`` chooses on a GPU
(``engines/fastest.py``): on the first frame, between that engine and the reference doing the
same work, the faster kept."""

import os
import sys

import hydranet_ros.predictor as predictor_module
from hydranet_ros.engines.fastest import FastestEngine
from hydranet_ros.engines.torch_engine import TorchEngine
from hydranet_ros.ros.node import main

real_create_engine = predictor_module.create_engine


def create_engine(model, preset, backend="auto", device="auto", precision="auto", log=print,
                  warn=print, calibration=None):
    engine = real_create_engine(model, preset, backend, device, precision, log, warn, calibration)
    if not isinstance(engine, TorchEngine):
        return engine
    engine.device_postprocess = True
    if os.environ.get("GPU_LIKE_MEASURED") != "1":
        return engine
    reference = TorchEngine(model, preset, engine.torch_device, optimize=False,
                            device_postprocess=True)
    return FastestEngine([reference, engine], log=log, warn=warn)


predictor_module.create_engine = create_engine
sys.exit(main())
