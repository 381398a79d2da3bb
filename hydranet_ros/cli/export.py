"""``hydranet-export``: the network as ONNX or OpenVINO IR, for deployment elsewhere (for
example TensorRT's ``trtexec --onnx=...``)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .. import weights as weights_mod
from ..checkpoint import load_model
from ..engines.export import FORMATS, SUFFIX, export, output_names
from ..engines.quantize import cached_int8, check_calibration
from ..errors import HydraNetError
from ..predictor import choose_preset
from ..presets import preset_names
from .common import description, run_main

PROG = "hydranet-export"


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """"HxW" -> (height, width); errors name ``option``, the argument it came from."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise HydraNetError(f"{option} must be HEIGHTxWIDTH, e.g. 480x640, got '{text}'") from None
    if height < 32 or width < 32:
        raise HydraNetError(f"{option} must be at least 32x32, got {height}x{width}")
    return height, width


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("--weights", required=True,
                        help=f"checkpoint file, or an official preset ({', '.join(preset_names())})")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--size", required=True, help="input HEIGHTxWIDTH, e.g. 480x640")
    parser.add_argument("--batch", type=int, default=1, help="batch size (static)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                        help="stored weights (fp16: OpenVINO only; for TensorRT use trtexec "
                             "--fp16); int8: OpenVINO quantised with NNCF on --calibration")
    parser.add_argument("--calibration", metavar="DIR", help="int8: a folder of your camera's "
                        "images (default: held-out synthetic frames, for the bundled weights)")
    parser.add_argument("--out", type=Path, help="output file (default: hydranet_<H>x<W>.onnx/.xml)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = parse_size(args.size)
    if args.batch < 1:
        raise HydraNetError("--batch must be at least 1")
    out = args.out or Path(f"hydranet_{size[0]}x{size[1]}{SUFFIX[args.format]}")
    if out.suffix != SUFFIX[args.format]:
        raise HydraNetError(f"{args.format} files end in {SUFFIX[args.format]}, not '{out.suffix}'")
    written = [out, out.with_suffix(".bin")] if args.format == "openvino" else [out]
    existing = next((path for path in written if path.exists()), None)
    if existing is not None and not args.overwrite:
        raise HydraNetError(f"refusing to overwrite {existing} (use --overwrite)")
    model = load_model(weights_mod.resolve(args.weights))
    if args.precision == "int8":
        export_int8(model, args, out, size)
    else:
        export(model, args.format, out, size, args.batch, args.precision)
    print(f"{PROG}: wrote {out}: input 'image' ({args.batch}, 3, {size[0]}, {size[1]}) float32, "
          f"RGB normalised with the preset's mean and std; outputs "
          f"{', '.join(output_names(model.num_tasks))} at 1/4 resolution", file=sys.stderr)
    return 0


def export_int8(model, args: argparse.Namespace, out: Path, size: tuple[int, int]) -> None:
    """Calibrate and quantise (through the engines' verified cache), then copy it to ``out``."""
    if args.format != "openvino":
        raise HydraNetError("int8 is an OpenVINO export: use --format openvino")
    preset = choose_preset(args.weights, None, model, args.weights)
    calibration = check_calibration(args.calibration, preset)

    def note(line: str) -> None:
        print(f"{PROG}: {line}", file=sys.stderr)
    cached = cached_int8(model, preset, size, args.batch, calibration, note)
    for source, target in ((cached, out), (cached.with_suffix(".bin"), out.with_suffix(".bin"))):
        shutil.copyfile(source, target)


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
