"""The training loop: seeded, resumable, with progress, periodic held-out evaluation and
checkpoints in the official format (``{'state_dict': ...}``)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import (infer_architecture, model_from_state_dict, read_state_dict,
                          save_checkpoint)
from ..errors import HydraNetError
from ..evaluation import evaluate_held_out
from ..metrics import DEFAULT_MAX_DEPTH_M
from ..predictor import Predictor
from ..model import HydraNet
from ..presets import Preset
from .data import FolderDataset, SyntheticStream
from .losses import multitask_loss

LAST = "last.ckpt"
STATE = "training_state.pt"
CONFIG = "config.json"
LOG = "log.jsonl"
INITIAL_DEPTH_M = 10.0


@dataclass
class TrainConfig:
    out: str
    preset: str = "synthetic"
    data: str = "synthetic"  # or a folder in the documented layout
    init: str = "random"  # or a checkpoint / official preset to fine-tune from
    steps: int = 1000
    batch_size: int = 8
    crop: tuple[int, int] = (160, 224)
    lr: float = 7e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    depth_loss: str = "relative"
    depth_weight: float = 1.0
    max_depth: float = DEFAULT_MAX_DEPTH_M
    depth_scale: float = 1000.0
    seed: int = 0
    workers: int = 1
    bf16: str = "auto"
    eval_every: int = 500
    eval_frames: int = 20
    save_every: int = 250


def init_for_training(model: HydraNet) -> HydraNet:
    """For training from scratch: He initialisation for the encoder (as torchvision's
    MobileNetV2; every conv there is followed by BatchNorm), the release's N(0, 0.01) for the
    decoder and heads. The decoder has no normalisation, and its chained residual pooling
    sums four convolutions per block: at He scale the four blocks amplify activations and
    gradients by orders of magnitude and the encoder stops learning within a few steps."""
    model.reset_parameters()
    encoder = [getattr(model, f"layer{i}") for i in range(1, 9)]
    for m in (m for layer in encoder for m in layer.modules()):
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
    nn.init.constant_(model.depth.bias, INITIAL_DEPTH_M)  # start near typical depths, not 0
    return model


def build_model(init: str, num_classes: int, num_tasks: int) -> tuple[HydraNet, list[str]]:
    """A model to train, and the names of tensors that start fresh (new or resized heads)."""
    model = init_for_training(HydraNet(num_classes, num_tasks))
    if init == "random":
        return model, []
    from ..weights import resolve
    source = read_state_dict(resolve(init))
    target = model.state_dict()
    fresh = [k for k, v in target.items()
             if k not in source or source[k].shape != v.shape]
    target.update({k: v for k, v in source.items() if k in target and k not in fresh})
    model.load_state_dict(target)
    return model, [k for k in fresh if not k.endswith("num_batches_tracked")]


def use_bf16(setting: str) -> bool:
    if setting == "auto":
        return bool(torch.cpu._is_avx512_bf16_supported())
    return setting == "on"


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 1 % of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _loader(cfg: TrainConfig, preset: Preset, start_step: int) -> DataLoader:
    seed = cfg.seed * 1_000_003 + start_step  # a resumed run draws fresh, still seeded data
    if cfg.data == "synthetic":
        dataset = SyntheticStream(preset, cfg.crop, seed)
        return DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.workers,
                          persistent_workers=cfg.workers > 0)
    dataset = FolderDataset(cfg.data, preset, cfg.crop, cfg.depth_scale, seed)
    if len(dataset) < cfg.batch_size:  # whole batches only: none at all would never end
        raise HydraNetError(f"{cfg.data} has {len(dataset)} training image(s), fewer than "
                            f"one batch of {cfg.batch_size}; lower --batch-size or add images")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                      num_workers=cfg.workers, generator=generator,
                      persistent_workers=cfg.workers > 0)


def _batches(loader: DataLoader):
    while True:  # epochs for a folder; the synthetic stream never ends
        try:
            yield from loader
        except HydraNetError as exc:
            raise HydraNetError(_worker_message(str(exc))) from None


def _worker_message(text: str) -> str:
    """A data error's own line. A DataLoader worker's error comes back with the worker's
    traceback in its message ("Caught HydraNetError in DataLoader worker process 0.
    Original Traceback ..."), which would print as many lines; the last one is the error."""
    if not text.startswith("Caught "):
        return text
    return text.rstrip().splitlines()[-1].split(": ", 1)[-1]


def _log(out: Path, record: dict) -> None:
    with open(out / LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


def _save(out: Path, model: HydraNet, optimizer, step: int, cfg: TrainConfig) -> None:
    save_checkpoint(model, out / LAST, extra={"step": step})
    state = {"step": step, "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state()}
    tmp = out / f".{STATE}.tmp"
    torch.save(state, tmp)
    tmp.replace(out / STATE)


def _resume(out: Path, model: HydraNet, optimizer, preset: Preset) -> int:
    """Load the model, optimizer and RNG state of the training in ``out``; returns its step.

    A checkpoint of another preset (class or task count), or a corrupt or foreign training
    state, is one line naming the file, not a size-mismatch or unpickling traceback."""
    state_dict = read_state_dict(out / LAST)
    classes, tasks = infer_architecture(state_dict, str(out / LAST))
    if (classes, tasks) != (preset.num_classes, preset.num_tasks):
        raise HydraNetError(f"cannot resume from {out / LAST}: it has {classes} classes and "
                            f"{tasks} task heads, preset '{preset.name}' has "
                            f"{preset.num_classes} and {preset.num_tasks}; pass the --preset "
                            "that training used, or choose another --out")
    model.load_state_dict(model_from_state_dict(state_dict, source=str(out / LAST)).state_dict())
    path = out / STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}")
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
    except Exception as exc:  # torch raises many types for bad bytes or a foreign dict
        reason = (str(exc).splitlines() or [""])[0][:120] or type(exc).__name__
        raise HydraNetError(f"cannot resume from {path}: it is corrupted, truncated or not a "
                            f"training state ({reason})") from None
    for param in model.parameters():
        moment = optimizer.state.get(param, {}).get("exp_avg")
        if moment is not None and moment.shape != param.shape:
            raise HydraNetError(f"cannot resume from {path}: it belongs to another training "
                                f"(its optimizer holds a {tuple(moment.shape)} tensor for a "
                                f"{tuple(param.shape)} weight of {out / LAST})")
    return step


def train(cfg: TrainConfig, preset: Preset, resume: bool = False) -> Path:
    """Run (or continue) a training; returns the path of the last checkpoint."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise HydraNetError(f"{out} is not empty: pass --resume to continue that training, or "
                            "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model, fresh = build_model(cfg.init, preset.num_classes, preset.num_tasks)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if resume and (out / STATE).exists():
        step = _resume(out, model, optimizer, preset)
    (out / CONFIG).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    bf16 = use_bf16(cfg.bf16)
    model = model.to(memory_format=torch.channels_last).train()
    if fresh and step == 0 and cfg.init != "random":
        tqdm.write(f"starting from {cfg.init}; new or resized: {', '.join(fresh)}")
    batches = _batches(_loader(cfg, preset, step))
    started, images = time.perf_counter(), 0
    with tqdm(total=cfg.steps, initial=step, unit="step", desc="training", dynamic_ncols=True) as bar:
        while step < cfg.steps:
            batch = next(batches)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, cfg)
            image = batch["image"].to(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = model(image)
            losses = multitask_loss(outputs, batch, cfg.max_depth, cfg.depth_loss,
                                    cfg.depth_weight)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            step += 1
            images += image.shape[0]
            rate = images / (time.perf_counter() - started)
            values = {k: round(v.item(), 4) for k, v in losses.items()}
            bar.set_postfix({**{k[:4]: v for k, v in values.items()}, "img/s": f"{rate:.1f}"})
            bar.update(1)
            _log(out, {"step": step, "lr": learning_rate(step - 1, cfg), **values,
                       "images_per_s": round(rate, 2)})
            if step % cfg.save_every == 0 or step == cfg.steps:
                _save(out, model, optimizer, step, cfg)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps) \
                    and cfg.eval_frames and cfg.data == "synthetic":
                device = str(next(model.parameters()).device)
                summary = evaluate_held_out(Predictor.for_model(model.eval(), preset, device),
                                            cfg.eval_frames)
                model.train()
                tqdm.write(f"step {step}: held-out {summary['frames']} frames: mIoU "
                           f"{summary['miou']:.3f}, AbsRel {summary['abs_rel']:.3f}, normals "
                           f"{summary['normal_mean_deg']:.1f} deg")
                _log(out, {"step": step, "held_out": summary})
    return out / LAST
