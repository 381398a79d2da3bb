"""Training: losses are masked per task, data sources, and a 2-step run end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from hydranet_ros.checkpoint import load_model, read_state_dict
from hydranet_ros.cli.common import run_main
from hydranet_ros.cli.train import main as train_main
from hydranet_ros.errors import HydraNetError
from hydranet_ros.presets import get_preset
from hydranet_ros.training.data import FolderDataset, SyntheticStream, decode_normals_png
from hydranet_ros.training.losses import depth_loss, multitask_loss, normals_loss
from hydranet_ros.training.trainer import build_model, init_for_training
from hydranet_ros.model import HydraNet
from hydranet_ros.visualize import colorize_normals


def test_losses_ignore_what_is_not_annotated():
    outputs = (torch.randn(2, 6, 8, 8), torch.rand(2, 1, 8, 8) * 10, torch.randn(2, 3, 8, 8))
    batch = {"labels": torch.full((2, 32, 32), 255), "depth": torch.zeros(2, 32, 32),
             "normals": torch.zeros(2, 3, 32, 32),
             "has_labels": torch.tensor([False, False]), "has_depth": torch.tensor([True, False]),
             "has_normals": torch.tensor([False, True])}
    losses = multitask_loss(outputs, batch, 80.0, "relative")
    assert set(losses) == {"depth", "normals", "total"}
    assert losses["depth"].item() == 0.0  # the depth map has no valid pixel


def test_depth_and_normal_losses_are_zero_at_the_truth():
    depth = torch.rand(1, 16, 16) * 50 + 1
    raw = depth[:, None, ::4, ::4].clone()
    # a constant map survives the bilinear upsampling exactly
    const = torch.full((1, 16, 16), 7.0)
    assert depth_loss(torch.full((1, 1, 4, 4), -7.0), const, 80.0, "relative").item() == 0.0
    assert depth_loss(torch.full((1, 1, 4, 4), 7.0), const, 80.0, "berhu").item() == 0.0
    assert depth_loss(raw, depth, 80.0, "relative").item() > 0.0
    up = torch.zeros(1, 3, 16, 16)
    up[:, 1] = -1.0
    assert normals_loss(up[:, :, ::4, ::4] * 3.0, up).item() == pytest.approx(0.0, abs=1e-6)
    assert normals_loss(-up[:, :, ::4, ::4], up).item() == pytest.approx(2.0)


def test_initialisation_keeps_the_decoder_small():
    model = init_for_training(HydraNet(6, 3))
    assert model.conv8.weight.std().item() < 0.02  # the release's N(0, 0.01)
    assert model.layer4[0].output[0][0].weight.std().item() > 0.05  # He for the encoder
    assert model.depth.bias.item() == 10.0


def test_fine_tuning_keeps_matching_tensors(make_checkpoint):
    source = make_checkpoint(40, 2)
    model, fresh = build_model(str(source), 6, 3)
    state = read_state_dict(source)
    assert torch.equal(model.state_dict()["layer3.0.output.0.0.weight"],
                       state["layer3.0.output.0.0.weight"])
    assert set(fresh) == {"segm.weight", "segm.bias", "pre_normal.weight", "normal.weight",
                          "normal.bias"}


def test_synthetic_stream_samples():
    stream = iter(SyntheticStream(get_preset("synthetic"), (64, 96), seed=1, width=128,
                                  height=96, pool=2))
    sample = next(stream)
    assert sample["image"].shape == (3, 64, 96) and sample["labels"].shape == (64, 96)
    assert sample["has_labels"] and sample["has_depth"] and sample["has_normals"]
    assert set(sample["labels"].unique().tolist()) <= set(range(6))
    valid = sample["normals"].norm(dim=0) > 0.5
    assert torch.allclose(sample["normals"].norm(dim=0)[valid], torch.tensor(1.0), atol=1e-4)


def make_folder(root, with_depth=True):
    rng = np.random.default_rng(0)
    for sub in ("images", "labels", "depth", "normals"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(root / "images" / f"f{i}.png"), rng.integers(0, 255, (40, 56, 3), np.uint8))
        cv2.imwrite(str(root / "labels" / f"f{i}.png"), rng.integers(0, 6, (40, 56), np.uint8))
        if with_depth and i != 1:  # f1 has no depth: an asymmetric annotation
            cv2.imwrite(str(root / "depth" / f"f{i}.png"),
                        rng.integers(1000, 30000, (40, 56)).astype(np.uint16))
        normals = np.zeros((40, 56, 3), np.float32)
        normals[..., 1] = -1
        cv2.imwrite(str(root / "normals" / f"f{i}.png"), colorize_normals(normals)[..., ::-1])


def test_folder_dataset(tmp_path):
    make_folder(tmp_path)
    data = FolderDataset(tmp_path, get_preset("synthetic"), None, depth_scale=1000.0, seed=0)
    assert len(data) == 3
    sample = data[0]
    assert sample["has_depth"] and sample["depth"].max() <= 30.0
    assert not data[1]["has_depth"]
    normals = sample["normals"][:, sample["normals"].norm(dim=0) > 0.5]
    assert torch.allclose(normals[1].abs(), torch.tensor(1.0), atol=0.01)


def test_normals_png_round_trip():
    n = np.array([[[0.6, -0.8, 0.0], [0.0, 0.0, -1.0]]], np.float32)
    assert np.allclose(decode_normals_png(colorize_normals(n)), n, atol=0.01)


def test_two_training_steps_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--out", str(out), "--steps", "2", "--batch-size", "2", "--crop", "64x96",
            "--eval-every", "2", "--eval-frames", "1", "--save-every", "1", "--workers", "0",
            "--export", str(tmp_path / "exported.ckpt")]
    assert run_main(train_main, args, prog="hydranet-train") == 0
    assert (out / "last.ckpt").exists() and (out / "training_state.pt").exists()
    raw = torch.load(out / "last.ckpt", weights_only=True)
    assert "state_dict" in raw and raw["step"] == 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "total" in r] == [1, 2]
    assert any("held_out" in r for r in log)
    exported = load_model(tmp_path / "exported.ckpt")
    assert (exported.num_classes, exported.num_tasks) == (6, 3)
    assert read_state_dict(tmp_path / "exported.ckpt")["segm.weight"].dtype == torch.float16
    # an existing run is not overwritten by accident, and can be resumed
    assert run_main(train_main, args[:-2], prog="hydranet-train") == 1
    assert "pass --resume" in capsys.readouterr().err
    resumed = ["--out", str(out), "--steps", "3", "--batch-size", "2", "--crop", "64x96",
               "--eval-every", "0", "--workers", "0", "--resume"]
    assert run_main(train_main, resumed, prog="hydranet-train") == 0
    assert torch.load(out / "last.ckpt", weights_only=True)["step"] == 3


def test_folder_training_step(tmp_path):
    make_folder(tmp_path / "data")
    args = ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--steps", "1",
            "--batch-size", "2", "--crop", "32x48", "--workers", "0"]
    assert run_main(train_main, args, prog="hydranet-train") == 0


def test_a_folder_smaller_than_a_batch_is_refused(tmp_path):
    """Batches are whole: three images and a batch of 8 would give none, and training would
    wait for one for ever."""
    make_folder(tmp_path / "data")
    args = ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--steps", "1",
            "--batch-size", "8", "--crop", "32x48", "--workers", "0"]
    with pytest.raises(HydraNetError, match="has 3 training image\\(s\\), fewer than one batch "
                                            "of 8"):
        train_main(args)


def test_evaluate_command_on_a_folder(tmp_path, make_checkpoint, capsys):
    """Ground truth that is the model's own prediction scores perfectly; ground truth with
    every class id moved to another class scores zero."""
    from hydranet_ros.cli.evaluate import main as evaluate_main
    from hydranet_ros.predictor import Predictor
    weights = str(make_checkpoint(6, 3))
    make_folder(tmp_path / "data")
    predictor = Predictor.from_weights(weights, device="cpu", backend="reference",
                                       log=lambda _: None)
    for image in sorted((tmp_path / "data" / "images").glob("*.png")):
        pred = predictor.predict(cv2.imread(str(image))[..., ::-1].copy())
        cv2.imwrite(str(tmp_path / "data" / "labels" / image.name), pred.labels)
        cv2.imwrite(str(tmp_path / "data" / "depth" / image.name),
                    np.clip(np.rint(pred.depth * 1000), 1, 65535).astype(np.uint16))
        cv2.imwrite(str(tmp_path / "data" / "normals" / image.name),
                    colorize_normals(pred.normals)[..., ::-1])
        (tmp_path / "wrong" / "labels").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "wrong" / "labels" / image.name), (pred.labels + 1) % 6)
    args = ["--weights", weights, "--data", str(tmp_path / "data"), "--json",
            "--backend", "reference"]
    assert run_main(evaluate_main, args, prog="hydranet-evaluate") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 3 and summary["miou"] == pytest.approx(1.0)
    assert summary["abs_rel"] < 1e-2, summary  # depth ground truth rounded to millimetres
    assert summary["normal_mean_deg"] < 1.0, summary  # normals rounded to 8 bits
    (tmp_path / "wrong" / "images").symlink_to(tmp_path / "data" / "images")
    args[3] = str(tmp_path / "wrong")
    assert run_main(evaluate_main, args, prog="hydranet-evaluate") == 0
    assert json.loads(capsys.readouterr().out)["miou"] == 0.0


def error_line(err: str) -> str:
    """The one error line of a refused command (argparse's usage lines may come before it)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    return lines[0]


@pytest.mark.parametrize("option, value, expected", [
    ("--save-every", "0", "at least 1"), ("--workers", "-1", "at least 0"),
    ("--lr", "-1", "above 0"), ("--lr", "0", "above 0"), ("--lr", "nan", "above 0"),
    ("--eval-every", "-1", "at least 0"), ("--eval-frames", "-1", "at least 0"),
    ("--depth-scale", "0", "above 0"), ("--depth-scale", "-1000", "above 0"),
    ("--depth-weight", "-1", "at least 0"), ("--seed", "-1", "at least 0"),
    ("--seed", str(2**32), "at most"),
])
def test_train_refuses_numbers_out_of_range(tmp_path, capsys, option, value, expected):
    """Each once gave a traceback (save-every 0, workers -1, seed -1), trained on nonsense
    (a negative rate, depth weight or scale) or evaluated nothing: refused before anything
    runs, in the usage line."""
    cheap = ["--steps", "1", "--batch-size", "2", "--crop", "32x48", "--workers", "0",
             "--eval-every", "0"]  # were it accepted (later options win)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--out", str(tmp_path / "run"), *cheap, f"{option}={value}"])
    assert exit_info.value.code == 2
    line = error_line(capsys.readouterr().err)
    assert f"argument {option}" in line and expected in line, line
    assert not (tmp_path / "run").exists()


def test_a_batch_batchnorm_cannot_train_on_is_refused(tmp_path, capsys):
    """One 32x32 crop leaves a 1x1 map at 1/32: BatchNorm raised "Expected more than 1 value
    per channel" at the first step. Two such crops, or one of 64x32, train."""
    from hydranet_ros.cli.common import run_main
    args = ["--out", str(tmp_path / "run"), "--steps", "1", "--workers", "0",
            "--eval-every", "0", "--crop", "32x32"]
    assert run_main(train_main, args + ["--batch-size", "1"], prog="hydranet-train") == 1
    line = error_line(capsys.readouterr().err)
    assert "--batch-size 1 with --crop 32x32 leaves one value per channel" in line
    assert not (tmp_path / "run").exists()
    assert run_main(train_main, args + ["--batch-size", "2"], prog="hydranet-train") == 0


def test_train_keeps_zero_where_it_means_none():
    """0 is meaningful for these: no held-out evaluation, no depth loss, no loader processes."""
    from hydranet_ros.cli.train import parse_args
    args = parse_args(["--out", "x", "--eval-every", "0", "--eval-frames", "0",
                       "--depth-weight", "0", "--workers", "0", "--seed", "0"])
    assert (args.eval_every, args.eval_frames, args.depth_weight, args.workers) == (0, 0, 0, 0)


def write_training(out, num_classes: int, num_tasks: int) -> None:
    """A training folder as hydranet-train leaves it, for a model of that shape."""
    from hydranet_ros.checkpoint import save_checkpoint
    out.mkdir()
    model = HydraNet(num_classes, num_tasks)
    optimizer = torch.optim.AdamW(model.parameters())
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()  # the moments the state carries
    save_checkpoint(model, out / "last.ckpt", extra={"step": 1})
    torch.save({"step": 1, "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state()}, out / "training_state.pt")


def resume_error(out, capsys) -> str:
    args = ["--out", str(out), "--steps", "2", "--batch-size", "2", "--crop", "64x96",
            "--workers", "0", "--eval-every", "0", "--resume"]
    assert run_main(train_main, args, prog="hydranet-train") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_resume_refuses_another_presets_training(tmp_path, capsys):
    """A 40-class training resumed as the 6-class preset: was a size-mismatch traceback."""
    write_training(tmp_path / "run", 40, 3)
    err = resume_error(tmp_path / "run", capsys)
    assert f"cannot resume from {tmp_path / 'run' / 'last.ckpt'}" in err
    assert "40 classes" in err and "--preset" in err


@pytest.mark.parametrize("damage, expected", [
    ("truncated", "corrupted, truncated or not a training state"),
    ("garbage", "corrupted, truncated or not a training state"),
    ("not a dict", "corrupted, truncated or not a training state"),
    ("another preset", "belongs to another training"),
])
def test_resume_refuses_a_damaged_training_state(tmp_path, capsys, damage, expected):
    """training_state.pt cut short, not a torch file, or the optimizer of another model (whose
    shapes would only fail at the first step): one line naming it, still loaded weights-only."""
    out = tmp_path / "run"
    write_training(out, 6, 3)
    state = out / "training_state.pt"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:5000])
    elif damage == "garbage":
        state.write_bytes(b"not a torch file at all")
    elif damage == "not a dict":
        torch.save(torch.zeros(3), state)
    else:
        write_training(tmp_path / "other", 40, 3)
        (tmp_path / "other" / "training_state.pt").replace(state)
    err = resume_error(out, capsys)
    assert f"cannot resume from {state}" in err and expected in err, err


@pytest.mark.parametrize("option, value, expected", [
    ("--frames", "0", "at least 1"), ("--frames", "-3", "at least 1"),
    ("--depth-scale", "0", "above 0"),
])
def test_evaluate_refuses_numbers_out_of_range(capsys, option, value, expected):
    from hydranet_ros.cli.evaluate import main as evaluate_main
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([f"{option}={value}"])
    assert exit_info.value.code == 2
    line = error_line(capsys.readouterr().err)
    assert f"argument {option}" in line and expected in line, line


def test_evaluate_a_checkpoint_that_matches_no_preset(make_checkpoint, capsys):
    """7 classes match no preset, so no --preset can be given (its classes would disagree):
    evaluated with depth scored up to the generic cap, said on stderr, instead of a
    TypeError on the generic preset's missing depth range."""
    from hydranet_ros.cli.evaluate import main as evaluate_main
    args = ["--weights", str(make_checkpoint(7, 3)), "--frames", "1", "--json",
            "--backend", "reference", "--device", "cpu"]
    assert run_main(evaluate_main, args, prog="hydranet-evaluate") == 0
    from hydranet_ros.metrics import DEFAULT_MAX_DEPTH_M
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["frames"] == 1 and len(summary["per_class_iou"]) == 7
    assert np.isfinite(summary["abs_rel"]) and np.isfinite(summary["normal_mean_deg"])
    assert "Traceback" not in captured.err
    assert f"match no preset, so there is no depth range: depth is scored up to " \
           f"{DEFAULT_MAX_DEPTH_M:g} m" in captured.err, captured.err


@pytest.mark.parametrize("folder", ["labels", "depth"])
def test_colour_target_pngs_are_refused(tmp_path, make_checkpoint, capsys, folder):
    """A labels/ or depth/ PNG saved as RGB: one line naming it and what is expected, from
    evaluation and from training (through a DataLoader worker) alike, not a numpy traceback."""
    from hydranet_ros.cli.evaluate import main as evaluate_main
    make_folder(tmp_path / "data")
    bad = tmp_path / "data" / folder / "f0.png"
    cv2.imwrite(str(bad), np.full((40, 56, 3), 3, np.uint8))
    args = ["--weights", str(make_checkpoint(6, 3)), "--data", str(tmp_path / "data"),
            "--backend", "reference", "--device", "cpu"]
    assert run_main(evaluate_main, args, prog="hydranet-evaluate") == 1
    expected = f"{bad} has 3 channels; {folder}/ PNGs must be single-channel"
    err = capsys.readouterr().err
    assert expected in error_line(err) and err.strip().splitlines()[-1].startswith(
        "hydranet-evaluate: error: "), err
    args = ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--steps", "1",
            "--batch-size", "3", "--crop", "32x48", "--workers", "1"]
    assert run_main(train_main, args, prog="hydranet-train") == 1
    holds = "8-bit class ids, 255 = ignore" if folder == "labels" else \
        "16-bit depth, metres = value / depth scale"
    assert error_line(capsys.readouterr().err) == \
        f"hydranet-train: error: {expected} ({holds})"  # the progress bar aside, one line
