"""A backend that prepares itself on its first frame, with PyTorch to take over if it cannot.

OpenVINO and ONNX Runtime export and compile the network for each input shape when the first
frame of that shape comes (``export.py``), long after ``create_engine`` chose them. Where the
export fails there (a read-only cache folder, a full disk, a conversion that breaks on this
install, int8 calibration images that cannot be read), a node would otherwise fail every
frame for as long as it runs. ``FallbackEngine`` turns that into one warning: PyTorch fp32 on
the same device takes over for good, the frame that failed included, so no frame is lost.

Only ``EngineError`` (what preparing a backend raises) switches; a bad frame's error
(``HydraNetError``) still fails that frame alone.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Engine, EngineError, Log, Result, RoutingEngine


class FallbackEngine(RoutingEngine):
    """``primary`` until it fails to prepare itself; then ``make_fallback()``, for good."""

    def __init__(self, primary: Engine, make_fallback: Callable[[], Engine],
                 warn: Log | None = None) -> None:
        super().__init__(primary.preset, primary.num_classes, primary.num_tasks)
        self.current = primary
        self._make_fallback: Callable[[], Engine] | None = make_fallback
        self._warn = warn or (lambda _: None)
        #: why the primary backend was given up, once it was
        self.failure: str | None = None
        #: raised for every call once neither the primary nor PyTorch could prepare: the
        #: export is not retried on every frame
        self._broken: EngineError | None = None

    # -- what the engine is: the one serving now --------------------------------------------

    @property
    def backend(self) -> str:
        return self.current.backend

    @property
    def precision(self) -> str:
        return self.current.precision

    @property
    def device(self) -> str:
        return self.current.device

    @property
    def outputs_on_device(self) -> bool:
        return self.current.outputs_on_device

    @property
    def caveat(self) -> str | None:
        return self.current.caveat

    def describe(self) -> str:
        if self.failure is None:
            return self.current.describe()
        return f"{self.current.describe()} (fallback: {self.failure})"

    def __getattr__(self, name: str):
        # anything else an engine offers (timings of a measured precision) is the current one's
        if name.startswith("_") or name == "current":
            raise AttributeError(name)
        return getattr(self.current, name)

    # -- the calls ---------------------------------------------------------------------------

    def _call(self, call: Callable[[Engine], Result]) -> Result:
        if self._broken is not None:
            raise self._broken
        try:
            return call(self.current)
        except EngineError as exc:
            make, self._make_fallback = self._make_fallback, None
            if make is None:
                raise  # the fallback itself failed to prepare: nothing left to switch to
            failed = f"{self.current.describe()} failed: {exc}".splitlines()[0]
            try:
                fallback = make()
            except Exception as fallback_exc:  # noqa: BLE001  reported once, then every frame
                self._broken = EngineError(f"{failed}, and PyTorch could not take over: "
                                           f"{type(fallback_exc).__name__}: {fallback_exc}"
                                           .splitlines()[0])
                raise self._broken from None
            self.current, self.failure = fallback, failed
            self._warn(f"{self.failure}; {self.current.describe()} takes over from this frame on")
        return call(self.current)
