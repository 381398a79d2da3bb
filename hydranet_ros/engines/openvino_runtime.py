"""The OpenVINO runtime, imported on demand, and the one ``ov.Core`` this process uses.

One Core, never released, rather than one per engine: OpenVINO's CPU plugin (2026.4 here)
gives the thread that first uses it an alternate signal stack of its own, and on release
puts back the one it found, even where that one has been freed meanwhile. Two Cores released
in the order they were made leave the thread's alternate stack in unmapped memory, and the
next signal a Python handler takes on that thread (Ctrl-C, SIGCHLD) kills the process with
SIGSEGV instead, without a word. This was the test suite's late SIGSEGV; ``test_engines.py``
repeats it in a child process. Temporary Cores of other libraries (NNCF's) are made and
released within this one's life, which the plugin handles.
"""

from __future__ import annotations

from functools import cache

from .base import EngineError


def openvino():
    """The ``openvino`` module, or a one-line EngineError saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise EngineError(f"the 'openvino' package is not installed ({exc}); "
                          "pip install openvino") from None
    return openvino


@cache
def shared_core():
    """This process's ``openvino.Core`` (made on first use, kept until the process ends)."""
    return openvino().Core()
