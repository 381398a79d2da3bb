"""``hydranet-train``: multi-task training on the synthetic world or on your own data.

Writes ``OUT/last.ckpt`` (official format: ``{'state_dict': ...}``), ``OUT/training_state.pt``
(for --resume), ``OUT/config.json`` and ``OUT/log.jsonl`` (losses per step, held-out metrics).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..checkpoint import load_model, save_checkpoint
from ..errors import HydraNetError
from ..presets import get_preset, preset_names
from ..training.trainer import TrainConfig, train
from .common import description, non_negative, positive, run_main, whole_number

PROG = "hydranet-train"
MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which training also sets, takes no more


def size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got '{text}'") from None
    if height < 32 or width < 32:
        raise argparse.ArgumentTypeError(f"crop {text} is too small (at least 32x32)")
    return height, width


def seed(text: str) -> int:
    """An argparse type: a seed numpy accepts (0 to 2**32 - 1), refused before training."""
    value = whole_number(0)(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_SEED}, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = TrainConfig(out="")
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for checkpoints and logs")
    parser.add_argument("--data", default=defaults.data,
                        help="'synthetic' (rendered on the fly) or a folder laid out as "
                             "images/, labels/, depth/, normals/ (see the README)")
    parser.add_argument("--preset", default=defaults.preset, choices=preset_names(),
                        help="classes and task count to train")
    parser.add_argument("--init", default=defaults.init,
                        help="'random', or a checkpoint file / official preset to fine-tune")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--crop", type=size, default=defaults.crop, metavar="HxW")
    parser.add_argument("--lr", type=positive, default=defaults.lr)
    parser.add_argument("--depth-loss", choices=("relative", "berhu"), default=defaults.depth_loss)
    parser.add_argument("--depth-weight", type=non_negative, default=defaults.depth_weight,
                        help="weight of the depth loss in the total")
    parser.add_argument("--depth-scale", type=positive, default=defaults.depth_scale,
                        help="depth PNG value per metre (folder data)")
    parser.add_argument("--seed", type=seed, default=defaults.seed)
    parser.add_argument("--workers", type=whole_number(0), default=defaults.workers,
                        help="data loading processes")
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default=defaults.bf16,
                        help="bfloat16 autocast (auto: where the CPU has AVX512-BF16)")
    parser.add_argument("--eval-every", type=whole_number(0), default=defaults.eval_every,
                        help="steps between held-out evaluations (synthetic data; 0: none)")
    parser.add_argument("--eval-frames", type=whole_number(0), default=defaults.eval_frames,
                        help="held-out frames per evaluation (0: none)")
    parser.add_argument("--save-every", type=whole_number(1), default=defaults.save_every,
                        help="steps between checkpoints (and always at the end)")
    parser.add_argument("--resume", action="store_true", help="continue the training in --out")
    parser.add_argument("--export", type=Path,
                        help="also write the final weights here as a float16 checkpoint")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        raise HydraNetError("--steps and --batch-size must be positive")
    height, width = args.crop
    if args.batch_size * math.ceil(height / 32) * math.ceil(width / 32) < 2:
        raise HydraNetError(f"--batch-size 1 with --crop {height}x{width} leaves one value per "
                            "channel at the network's deepest layer (1/32 of the crop), which "
                            "BatchNorm cannot train on: use a batch of 2 or a larger crop")
    if args.export is not None and args.export.exists():
        raise HydraNetError(f"refusing to overwrite {args.export}")
    cfg = TrainConfig(out=args.out, preset=args.preset, data=args.data, init=args.init,
                      steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                      depth_loss=args.depth_loss, depth_weight=args.depth_weight,
                      depth_scale=args.depth_scale, seed=args.seed,
                      workers=args.workers, bf16=args.bf16, eval_every=args.eval_every,
                      eval_frames=args.eval_frames, save_every=args.save_every)
    last = train(cfg, get_preset(args.preset), resume=args.resume)
    if args.export is not None:
        save_checkpoint(load_model(last), args.export, half=True)
        print(f"{PROG}: exported {args.export}", file=sys.stderr)
    return 0


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
