"""hydranet-infer end to end: every output at the input's full size, and clear failures."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hydranet_ros.cli.common import fresh_folder, run_main
from hydranet_ros.errors import HydraNetError
from hydranet_ros.cli.infer import PROG, main
from hydranet_ros.presets import get_preset


def infer(args: list[str]) -> int:
    return run_main(main, args, prog=PROG)


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_kitti_example_at_full_size(reference, make_checkpoint, tmp_path):
    """1226x370 is not divisible by 32: every output must still be 1226x370."""
    image = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    out = tmp_path / "out"
    assert infer([str(image), "--weights", str(make_checkpoint(6, 2)), "--out", str(out),
                  "--device", "cpu"]) == 0
    labels = read(out / "000099_labels.png")
    assert labels.shape == (370, 1226) and labels.dtype == np.uint8 and labels.max() < 6
    assert read(out / "000099_segmentation.png").shape == (370, 1226, 3)
    confidence = read(out / "000099_confidence.png")
    assert confidence.shape == (370, 1226) and confidence.dtype == np.uint8
    assert confidence.min() >= 255 // 6 and len(np.unique(confidence)) > 1
    depth = np.load(out / "000099_depth.npy")
    assert depth.shape == (370, 1226) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth >= 0).all()
    assert read(out / "000099_depth.png").shape == (370, 1226, 3)
    assert read(out / "000099_montage.png").shape == (370 + 24, 3 * 1226, 3)
    assert not (out / "000099_normals.png").exists()
    # the colour image is the label image through the KITTI colour map (PNG is BGR on disk)
    colors = read(out / "000099_segmentation.png")[..., ::-1]
    assert np.array_equal(colors, get_preset("kitti").colors[labels])


def test_three_task_folder_with_progress(reference, make_checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("000433.png",):
        shutil.copy(reference / "examples" / "ExpNYUD_three" / name, folder / name)
    shutil.copy(reference / "examples" / "ExpNYUD_joint" / "000464.png", folder / "000464.png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    assert infer([str(folder), "--weights", str(make_checkpoint(40, 3)), "--out", str(out)]) == 0
    for stem in ("000433", "000464"):
        normals = read(out / f"{stem}_normals.png")
        assert normals.shape == (480, 640, 3)
        assert read(out / f"{stem}_montage.png").shape == (480 + 24, 4 * 640, 3)
    err = capsys.readouterr().err
    assert "images: 100%" in err and "2/2" in err


def test_refuses_to_overwrite(reference, make_checkpoint, tmp_path, capsys):
    image = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    weights = str(make_checkpoint(6, 2))
    out = tmp_path / "out"
    assert infer([str(image), "--weights", weights, "--out", str(out)]) == 0
    before = (out / "000099_labels.png").stat().st_mtime_ns
    assert infer([str(image), "--weights", weights, "--out", str(out)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (out / "000099_labels.png").stat().st_mtime_ns == before
    assert infer([str(image), "--weights", weights, "--out", str(out), "--overwrite"]) == 0


def test_unreadable_image_is_reported_and_others_still_processed(reference, make_checkpoint,
                                                                tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    out = tmp_path / "out"
    code = infer([str(broken), str(tmp_path / "absent.jpg"), str(good),
                  "--weights", str(make_checkpoint(6, 2)), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot read image {broken}: not a readable image file" in err
    assert "absent.jpg: No such file or directory" in err
    assert "wrote outputs for 1 of 3 image(s)" in err
    assert (out / "000099_montage.png").exists()


def test_preset_must_fit_the_weights(reference, make_checkpoint, tmp_path, capsys):
    image = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    assert infer([str(image), "--weights", str(make_checkpoint(6, 2)), "--preset", "nyud",
                  "--out", str(tmp_path / "o")]) == 1
    assert "has 6 classes but preset 'nyud' has 40" in capsys.readouterr().err


def test_bad_weights_file_from_the_installed_command(reference, tmp_path):
    """The console script itself: one line on stderr, exit 1, no traceback."""
    exe = str(Path(sys.executable).with_name("hydranet-infer"))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    image = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    result = subprocess.run([exe, str(image), "--weights", str(bad), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"hydranet-infer: error: weights file {bad} is corrupted or truncated")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_fresh_folder_replaces_only_an_earlier_output(tmp_path):
    """--overwrite of hydranet-demo and hydranet-soak: their own earlier output goes, a
    folder with anything else in it is refused and kept."""
    out = tmp_path / "out"
    fresh_folder(out, False, ("logs",), ("soak.json",))
    (out / "soak.json").write_text("{}")
    with pytest.raises(HydraNetError, match="refusing to overwrite"):
        fresh_folder(out, False, ("logs",), ("soak.json",))
    fresh_folder(out, True, ("logs",), ("soak.json",))
    assert sorted(p.name for p in out.iterdir()) == ["logs"]
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(HydraNetError, match="it holds 'notes.txt', which this command does not "
                                            "make"):
        fresh_folder(out, True, ("logs",), ("soak.json",))
    assert (out / "notes.txt").read_text() == "keep me"


def test_output_folder_problems_are_one_line(reference, make_checkpoint, tmp_path, capsys):
    image = str(reference / "examples" / "ExpKITTI_joint" / "000099.png")
    weights = str(make_checkpoint(6, 2))
    a_file = tmp_path / "a_file"
    a_file.write_text("the user's")
    assert infer([image, "--weights", weights, "--out", str(a_file)]) == 1
    assert capsys.readouterr().err == f"{PROG}: error: --out {a_file} is a file, not a folder\n"
    assert infer([image, "--weights", weights, "--out", str(a_file / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"{PROG}: error: cannot create --out {a_file / 'out'}: Not a directory"
    assert a_file.read_text() == "the user's"


def test_an_image_over_opencvs_pixel_limit_is_skipped(reference, make_checkpoint, tmp_path,
                                                       capsys):
    """A PNG header of 40000x40000 pixels: OpenCV raises; the run goes on with the others."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    good = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    out = tmp_path / "out"
    assert infer([str(huge), str(good), "--weights", str(make_checkpoint(6, 2)),
                  "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot read image {huge}: over OpenCV's limit of 2^30 pixels" in err
    assert "wrote outputs for 1 of 2 image(s)" in err and "Traceback" not in err
    assert (out / "000099_montage.png").exists()


@pytest.mark.parametrize("failure, code", [(HydraNetError("cannot write (disk full)"), 1),
                                           (KeyboardInterrupt(), 130)])
def test_an_image_set_is_written_whole_or_not_at_all(reference, make_checkpoint, tmp_path,
                                                    monkeypatch, failure, code):
    """A failure or Ctrl-C after an image's first outputs leaves none of its files, so a rerun
    does not find a half set under the final names."""
    from hydranet_ros.cli import infer as infer_cli
    from hydranet_ros.images import write_png
    written: list[Path] = []

    def failing_third(path, image):
        if len(written) == 2:
            raise failure
        write_png(path, image)
        written.append(Path(path))
    monkeypatch.setattr(infer_cli, "write_png", failing_third)
    out = tmp_path / "out"
    image = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    assert infer([str(image), "--weights", str(make_checkpoint(6, 2)), "--out", str(out)]) == code
    assert len(written) == 2 and not any(p.exists() for p in written)
    assert list(out.iterdir()) == []
