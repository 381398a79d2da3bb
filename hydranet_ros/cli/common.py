"""What every command shares: one-line errors instead of tracebacks, quiet Ctrl-C, and the
engine options."""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
from collections.abc import Callable
from typing import TypeVar
from pathlib import Path

from ..engines import BACKENDS, PRECISIONS
from ..entry_points import EXIT_INTERRUPTED, stop_signals_as_interrupt
from ..errors import HydraNetError
from ..predictor import Predictor

EXIT_ERROR = 1
T = TypeVar("T")


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None,
             prog: str = "") -> int:
    """Call ``main``; a HydraNetError becomes ``prog: error: ...`` on stderr and exit 1.

    So does an OSError (a path that cannot be written, a full disk): the user's to fix, and
    its text names the path and the reason, which a traceback would only bury. SIGTERM and
    SIGHUP stop it as Ctrl-C does (``entry_points.STOP_SIGNALS``)."""
    previous = stop_signals_as_interrupt()
    try:
        return main(argv)
    except (HydraNetError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():  # as they were (main may run in a test)
            signal.signal(sig, handler)


def description(doc: str) -> str:
    """A command's --help description: its docstring's first paragraph, without the
    docstring's markup (``name``)."""
    return doc.split("\n\n")[0].replace("``", "").strip()


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``, refused in the usage line
    before anything runs (not minutes later, or as a traceback, where it is first used)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
        return value
    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    return value if math.isfinite(value) else math.nan


def positive(text: str) -> float:
    """An argparse type: a finite number above 0 (a rate, a duration)."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got '{text}'")
    return value


def non_negative(text: str) -> float:
    """An argparse type: a finite number of at least 0 (a weight, where 0 switches it off)."""
    value = _finite(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got '{text}'")
    return value


def listing(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse type: comma-separated values, each checked by ``item`` ('' for none)."""
    def parse(text: str) -> list[T]:
        return [item(part.strip()) for part in text.split(",") if part.strip()]
    return parse


def fresh_folder(out: Path, overwrite: bool, subfolders: tuple[str, ...] = (),
                 files: tuple[str, ...] = ()) -> None:
    """An empty output folder (with ``subfolders``). One with content is replaced only with
    ``overwrite``, and only when it holds nothing but what the command makes (``subfolders``
    and ``files``): an earlier output, never a folder of other things given by mistake."""
    if out.exists() and not out.is_dir():
        raise HydraNetError(f"{out} is a file, not an output folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise HydraNetError(f"refusing to overwrite {out} (use --overwrite)")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in subfolders + files)
        if foreign:
            raise HydraNetError(f"refusing to replace {out}: it holds {foreign[0]!r}, which "
                                "this command does not make, so it is not an earlier output")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in subfolders:
        (out / name).mkdir(exist_ok=True)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --backend and --precision, the same for every command that runs the network."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="inference engine (auto: the fastest available; reference: the "
                             "release's exact eager fp32 computation)")
    parser.add_argument("--precision", default="auto", choices=("auto",) + PRECISIONS,
                        help="auto: the backend's fastest accuracy-guarded precision (on a "
                             "GPU timed on the first frame); int8: "
                             "OpenVINO quantised with NNCF (see --calibration)")
    parser.add_argument("--calibration", metavar="DIR", help="int8: a folder of your camera's "
                        "images to calibrate on (default: held-out synthetic frames, right for "
                        "the bundled weights only)")


def predictor_from_args(args: argparse.Namespace) -> Predictor:
    def note(line: str) -> None:
        print(line, file=sys.stderr)
    return Predictor.from_weights(args.weights, args.preset, args.device, args.backend,
                                  args.precision, log=note, warn=note,
                                  calibration=args.calibration)


def node_engine_parameters(args: argparse.Namespace) -> dict:
    """The engine options as hydranet_node parameters, for commands that start the node."""
    params = {"device": args.device, "backend": args.backend, "precision": args.precision}
    if args.calibration:
        params["calibration_images"] = args.calibration
    return params
