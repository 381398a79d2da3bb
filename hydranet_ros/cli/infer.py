"""``hydranet-infer``: segmentation, depth and normals for image files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import HydraNetError
from ..images import find_images, read_rgb, write_png
from ..postprocess import CONFIDENCE, PARTS, Prediction
from ..presets import Preset, preset_names
from ..visualize import colorize_depth, colorize_labels, colorize_normals, depth_range, montage
from .common import add_engine_arguments, description, predictor_from_args, run_main

PROG = "hydranet-infer"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                        help="image files, or folders whose image files are all processed")
    parser.add_argument("--weights", required=True,
                        help=f"checkpoint file, or an official preset ({', '.join(preset_names())}) "
                             "downloaded into the cache on first use")
    parser.add_argument("--preset", choices=preset_names(),
                        help="class names, colours and depth range (default: from the weights)")
    add_engine_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser.parse_args(argv)


def output_paths(out: Path, image: Path, has_normals: bool) -> dict[str, Path]:
    names = {"labels": "labels.png", "confidence": "confidence.png",
             "segmentation": "segmentation.png", "depth": "depth.npy",
             "depth_color": "depth.png", "montage": "montage.png"}
    if has_normals:
        names["normals"] = "normals.png"
    return {key: out / f"{image.stem}_{suffix}" for key, suffix in names.items()}


def check_outputs(plans: list[dict[str, Path]], overwrite: bool) -> None:
    """Refuse up front: clashing outputs, or existing files without --overwrite."""
    seen: set[Path] = set()
    for paths in plans:
        for path in paths.values():
            if path in seen:
                raise HydraNetError(f"two inputs would both write {path}; give them different names")
            seen.add(path)
            if path.exists() and not overwrite:
                raise HydraNetError(f"refusing to overwrite {path} (use --overwrite)")


def write_outputs(paths: dict[str, Path], rgb: np.ndarray, pred: Prediction,
                  preset: Preset) -> None:
    segmentation = colorize_labels(pred.labels, preset)
    depth_color = colorize_depth(pred.depth, depth_range(pred.depth, preset))
    panels = [("input", rgb), ("segmentation", segmentation), ("depth", depth_color)]
    write_png(paths["labels"], pred.labels)
    write_png(paths["confidence"], pred.confidence)
    write_png(paths["segmentation"], segmentation)
    np.save(paths["depth"], pred.depth)
    write_png(paths["depth_color"], depth_color)
    if pred.normals is not None:
        normals = colorize_normals(pred.normals)
        write_png(paths["normals"], normals)
        panels.append(("normals", normals))
    write_png(paths["montage"], montage(panels))


def write_whole(paths: dict[str, Path], rgb: np.ndarray, pred: Prediction,
                preset: Preset) -> None:
    """One image's outputs, all or none: an error or Ctrl-C part way removes the ones written,
    so no half set is left under the final names (a rerun would take it for done)."""
    try:
        write_outputs(paths, rgb, pred, preset)
    except BaseException:
        for path in paths.values():
            path.unlink(missing_ok=True)
        raise


def make_output_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HydraNetError(f"cannot create --out {out}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = find_images(args.inputs)
    if not images:
        raise HydraNetError("no image files found in " + ", ".join(args.inputs))
    if args.out.exists() and not args.out.is_dir():
        raise HydraNetError(f"--out {args.out} is a file, not a folder")
    predictor = predictor_from_args(args)
    plans = [output_paths(args.out, image, predictor.has_normals) for image in images]
    check_outputs(plans, args.overwrite)
    make_output_folder(args.out)
    failures = 0
    for image, paths in tqdm(list(zip(images, plans)), desc="images", unit="img",
                             disable=len(images) < 2):
        try:
            rgb = read_rgb(image)
            prediction = predictor.predict(rgb, parts=frozenset(PARTS + (CONFIDENCE,)))
        except HydraNetError as exc:
            tqdm.write(f"{PROG}: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        write_whole(paths, rgb, prediction, predictor.preset)
    done = len(images) - failures
    print(f"{PROG}: wrote outputs for {done} of {len(images)} image(s) to {args.out}",
          file=sys.stderr)
    return 1 if failures else 0


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
