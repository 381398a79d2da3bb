"""Pre- and post-processing agree to the pixel with the release's notebooks, and the colour
views encode what they claim."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

from conftest import make_model, require
from hydranet_ros.images import read_rgb
from hydranet_ros.engines.torch_engine import confidence_on_device
from hydranet_ros.postprocess import (label_dtype, labels_and_confidence, labels_from_logits,
                                      postprocess)
from hydranet_ros.predictor import Predictor
from hydranet_ros.presets import get_preset
from hydranet_ros.visualize import (colorize_depth, colorize_labels, colorize_normals,
                                    label_palette, montage)


def notebook_outputs(model, img, num_classes, num_tasks):
    """A transcription of the release's notebook cell (ExpNYUD_three / ExpKITTI_joint)."""
    img_scale = 1.0 / 255
    img_mean = np.array([0.485, 0.456, 0.406]).reshape((1, 1, 3))
    img_std = np.array([0.229, 0.224, 0.225]).reshape((1, 1, 3))
    prepared = (img * img_scale - img_mean) / img_std
    with torch.no_grad():
        out = model(torch.from_numpy(prepared.transpose(2, 0, 1)[None]).float())
    size = img.shape[:2][::-1]
    segm = cv2.resize(out[0][0, :num_classes].numpy().transpose(1, 2, 0), size,
                      interpolation=cv2.INTER_CUBIC)
    depth = cv2.resize(out[1][0, 0].numpy(), size, interpolation=cv2.INTER_CUBIC)
    result = {"labels": segm.argmax(axis=2), "depth": np.abs(depth)}
    if num_tasks == 3:
        norm = cv2.resize(out[2][0].numpy().transpose(1, 2, 0), size, interpolation=cv2.INTER_CUBIC)
        out_norm = norm / np.linalg.norm(norm, axis=2, keepdims=True)
        out_norm[:, :, 0] = ((out_norm[:, :, 0] + 1.0) / 2.0) * 255.0
        out_norm[:, :, 1] = ((out_norm[:, :, 1] + 1.0) / 2.0) * 255.0
        out_norm[:, :, 2] = ((1.0 - out_norm[:, :, 2]) / 2.0) * 255.0
        result["normals_rgb"] = out_norm.astype(np.uint8)
    return result


@pytest.mark.parametrize("example, preset_name", [
    ("ExpNYUD_three/000433.png", "nyud_three"),
    ("ExpKITTI_joint/000099.png", "kitti"),
])
def test_pipeline_matches_release_notebook_to_the_pixel(reference, example, preset_name):
    preset = get_preset(preset_name)
    model = make_model(preset.num_classes, preset.num_tasks, seed=5)
    img = read_rgb(reference / "examples" / example)
    expected = notebook_outputs(model, img, preset.num_classes, preset.num_tasks)
    pred = Predictor.for_model(model, preset).predict(img)

    assert pred.labels.shape == img.shape[:2] and pred.labels.dtype == np.uint8
    assert np.array_equal(pred.labels, expected["labels"])
    assert len(np.unique(pred.labels)) > 1, "degenerate labels would make the check vacuous"
    assert np.array_equal(pred.depth, expected["depth"])
    cmap_file = "cmap_nyud.npy" if preset_name.startswith("nyud") else "cmap_kitti.npy"
    cmap = np.load(reference / cmap_file)
    offset = 1 if preset_name.startswith("nyud") else 0  # the release's NYUD map is id + 1
    assert np.array_equal(colorize_labels(pred.labels, preset), cmap[pred.labels + offset])
    if preset.num_tasks == 3:
        assert np.array_equal(colorize_normals(pred.normals), expected["normals_rgb"])
        norms = np.linalg.norm(pred.normals, axis=2)
        assert np.allclose(norms, 1.0, atol=1e-5)


def test_reading_matches_pil(reference):
    from PIL import Image
    path = reference / "examples" / "ExpKITTI_joint" / "000099.png"
    assert np.array_equal(read_rgb(path), np.array(Image.open(path)))


def test_labels_dtype_and_single_class():
    assert label_dtype(40) == np.uint8 and label_dtype(256) == np.uint8
    assert label_dtype(300) == np.uint16
    one = labels_from_logits(np.random.rand(1, 5, 7).astype(np.float32), (20, 28))
    assert one.shape == (20, 28) and not one.any()
    many = labels_from_logits(np.random.rand(300, 5, 7).astype(np.float32), (10, 14))
    assert many.dtype == np.uint16 and many.max() >= 256


def test_postprocess_sizes_and_units():
    raw = (np.random.rand(6, 8, 10).astype(np.float32),
           -np.full((1, 8, 10), 3.0, dtype=np.float32),
           np.random.randn(3, 8, 10).astype(np.float32))
    pred = postprocess(raw, (31, 39))
    assert pred.labels.shape == pred.depth.shape == (31, 39)
    assert pred.normals.shape == (31, 39, 3)
    assert np.allclose(pred.depth, 3.0)  # abs() of a negative constant
    assert pred.depth.dtype == np.float32 and pred.normals.dtype == np.float32


def test_label_colours_and_ignore():
    preset = get_preset("kitti")
    labels = np.array([[0, 5, 6, 255]], dtype=np.uint8)
    rgb = colorize_labels(labels, preset)
    assert rgb.tolist() == [[[128, 128, 128], [64, 0, 128], [0, 0, 0], [0, 0, 0]]]
    wide = colorize_labels(np.array([[2, 60000]], dtype=np.uint16), preset)
    assert wide.tolist() == [[[128, 64, 128], [0, 0, 0]]]
    assert label_palette(preset).shape == (256, 3)


def test_depth_colours():
    depth = np.array([[0.0, 40.0, 80.0, 200.0, np.nan]], dtype=np.float32)
    rgb = colorize_depth(depth, (0.0, 80.0))
    plasma = cv2.applyColorMap(np.array([[0, 128, 255]], dtype=np.uint8), cv2.COLORMAP_PLASMA)
    assert rgb[0, :3].tolist() == plasma[0, :, ::-1].tolist()
    assert rgb[0, 3].tolist() == rgb[0, 2].tolist()  # clipped at the far end
    assert rgb[0, 4].tolist() == [0, 0, 0]  # invalid


def test_normal_colours():
    normals = np.array([[[0, 0, -1], [1, 0, 0], [0, -1, 0]]], dtype=np.float32)
    kept = normals.copy()
    assert colorize_normals(normals).tolist() == [[[127, 127, 255], [255, 127, 127], [127, 0, 127]]]
    assert np.array_equal(normals, kept)  # the node publishes the same normals too
    # a strided view (every other column) gives the colours of its pixels
    assert colorize_normals(np.repeat(normals, 2, axis=1)[:, ::2]).tolist() == \
        colorize_normals(normals).tolist()


def test_normal_colours_are_the_formula_as_written_bit_for_bit():
    """The in-place arithmetic gives the bytes of ((n * (1, 1, -1) + 1) / 2) * 255 truncated,
    over a dense sweep of every component value a unit vector (and rounding) can have."""
    values = np.linspace(-1.0001, 1.0001, 3 * 400_000, dtype=np.float32).reshape(-1, 1, 3)
    flipped = values * np.array([1.0, 1.0, -1.0], dtype=np.float32)
    one, two, full = np.float32(1.0), np.float32(2.0), np.float32(255.0)
    expected = (((flipped + one) / two) * full).astype(np.uint8)
    assert np.array_equal(colorize_normals(values), expected)
    assert colorize_normals(values).dtype == np.uint8


def test_a_normal_without_direction_is_black_without_a_warning():
    """A zero vector normalised is NaN (as in the release); its colour is black, not an
    invalid cast with a RuntimeWarning on every run of a fresh model."""
    normals = np.array([[[np.nan, np.nan, np.nan], [0, 0, -1]]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert colorize_normals(normals).tolist() == [[[0, 0, 0], [127, 127, 255]]]


def test_montage_layout():
    panels = [(str(i), np.full((10, 20, 3), i, dtype=np.uint8)) for i in range(5)]
    assert montage(panels).shape == (10 + 24, 100, 3)
    assert montage(panels, columns=2).shape == (3 * 34, 40, 3)


@pytest.mark.parametrize("classes", [2, 6, 40, 300])
def test_running_argmax_equals_resize_then_argmax(classes):
    rng = np.random.default_rng(classes)
    logits = rng.normal(size=(classes, 13, 17)).astype(np.float32)
    logits[classes // 2] = logits[0]  # an exact tie: the first class must win, as argmax does
    expected = np.concatenate([cv2.resize(np.ascontiguousarray(logits[i:i + 100].transpose(1, 2, 0)),
                                          (70, 50), interpolation=cv2.INTER_CUBIC)
                               .reshape(50, 70, -1) for i in range(0, classes, 100)], axis=2)
    labels = labels_from_logits(logits, (50, 70))
    assert np.array_equal(labels, expected.argmax(axis=2))
    assert labels.dtype == (np.uint8 if classes <= 256 else np.uint16)


@pytest.fixture(params=["numba", "opencv"])
def normals_path(request, monkeypatch):
    """The normals made unit vectors in one compiled pass (numba), or plane by plane with
    OpenCV (without numba)."""
    import hydranet_ros.postprocess as post
    if request.param == "numba":
        if post.unit_normals is None:
            require(f"the compiled normals need numba ({post.RESIZED_ARGMAX_MISSING})")
    else:
        monkeypatch.setattr(post, "unit_normals", None)
    return request.param


def test_normals_match_numpy_normalisation(normals_path):
    raw = np.random.default_rng(3).normal(size=(3, 12, 16)).astype(np.float32)
    pred = postprocess((np.zeros((2, 12, 16), np.float32), np.zeros((1, 12, 16), np.float32), raw),
                       (45, 61))
    resized = cv2.resize(np.ascontiguousarray(raw.transpose(1, 2, 0)), (61, 45),
                         interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(pred.normals, resized / np.linalg.norm(resized, axis=2, keepdims=True))


def test_normals_of_a_whole_frame_are_the_releases_bit_for_bit(normals_path):
    """At 640x480 every pixel's bits are those of the release's formula, also for vectors of
    zero length (NaN), NaN components, and components whose squares overflow (inf) or
    underflow; summing the squares in another order, or fusing a multiply and an add, changes
    the last bit of many pixels. The result has room for its message (published in place)."""
    from hydranet_ros import message_room
    from hydranet_ros.postprocess import normals_from_raw
    rng = np.random.default_rng(11)
    raw = rng.normal(size=(3, 120, 160)).astype(np.float32)
    resized = cv2.resize(np.ascontiguousarray(raw.transpose(1, 2, 0)), (640, 480),
                         interpolation=cv2.INTER_CUBIC)
    expected = resized / np.linalg.norm(resized, axis=2, keepdims=True)
    normals = normals_from_raw(raw, (480, 640))
    assert normals.shape == (480, 640, 3) and normals.dtype == np.float32
    assert np.array_equal(normals.view(np.uint32), expected.view(np.uint32))
    assert message_room.room(normals) is not None
    special = np.array([[[0, 0, 0], [np.nan, 1, 0], [3e30, 1, 0], [np.inf, 0, 0],
                         [1e-30, 2e-30, 0], [-0.0, 0, -2]]], np.float32)
    flat = np.repeat(special, 40, axis=0).transpose(2, 0, 1)  # (3, 40, 6): not resized
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        expected = np.repeat(special / np.linalg.norm(special, axis=2, keepdims=True), 40, 0)
    made = normals_from_raw(np.ascontiguousarray(flat), (40, 6))
    assert np.array_equal(np.isnan(made), np.isnan(expected))
    assert np.array_equal(made.view(np.uint32)[~np.isnan(made)],
                          expected.view(np.uint32)[~np.isnan(expected)])


@pytest.fixture(params=["numba", "opencv"])
def confidence_path(request, monkeypatch):
    """The confidence compiled with the labels (numba), or in a second pass over OpenCV's
    class planes (without numba)."""
    import hydranet_ros.postprocess as post
    if request.param == "numba":
        if post.resized_argmax is None:
            require(f"the compiled labels need numba ({post.RESIZED_ARGMAX_MISSING})")
    else:
        monkeypatch.setattr(post, "resized_argmax", None)
        monkeypatch.setattr(post, "_warned_without_numba", True)
    return request.param


def exact_confidence(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """255 x the softmax probability of the best class over the scores resized as the release
    resizes them (one multi-channel cv2.resize), in float64, rounded."""
    resized = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), size[::-1],
                         interpolation=cv2.INTER_CUBIC).reshape(*size, -1)
    resized = resized.transpose(2, 0, 1).astype(np.float64)
    probability = np.exp(resized - resized.max(axis=0))
    probability /= probability.sum(axis=0)
    return np.rint(255 * probability.max(axis=0))


@pytest.mark.parametrize("classes", [3, 6, 40])
def test_confidence_is_the_softmax_of_the_resized_scores(classes, confidence_path):
    """255 x the probability of the chosen class, with the same ids as the labels alone."""
    rng = np.random.default_rng(classes)
    logits = rng.normal(0.0, 3.0, size=(classes, 12, 16)).astype(np.float32)
    size = (48, 64)
    labels, confidence = labels_and_confidence(logits, size)
    assert np.array_equal(labels, labels_from_logits(logits, size))
    assert confidence.dtype == np.uint8 and confidence.shape == size
    assert np.abs(confidence.astype(int) - exact_confidence(logits, size)).max() <= 1
    assert confidence.min() >= 255 // classes  # never below the uniform probability
    pred = postprocess((logits, np.ones((1, 12, 16), np.float32)), size, {"confidence"})
    assert pred.labels is None and np.array_equal(pred.confidence, confidence)


@pytest.mark.parametrize("source, size", [((120, 160), (480, 640)), ((93, 307), (370, 1226))],
                         ids=["640x480", "kitti"])
def test_confidence_of_whole_frames_shared_between_threads(source, size, confidence_path,
                                                           monkeypatch):
    """Frame-sized, shared out between the workers (bands of rows, or runs of classes) beside
    the depth and normals: off by at most 1 from the exact value, and off at all on almost
    no pixel: compiled, from the release's own scores (its exponential is a polynomial: a
    poor one would show here); without numba, from OpenCV's class planes, whose last bits
    differ from the multi-channel resize's."""
    import hydranet_ros.postprocess as post
    monkeypatch.setattr(post, "WORKERS", 3)
    rng = np.random.default_rng(source[1])
    raw = (rng.normal(0.0, 4.0, size=(40, *source)).astype(np.float32),
           rng.normal(size=(1, *source)).astype(np.float32),
           rng.normal(size=(3, *source)).astype(np.float32))
    pred = postprocess(raw, size, {"labels", "depth", "normals", "confidence"})
    difference = np.abs(pred.confidence.astype(int) - exact_confidence(raw[0], size))
    off = (difference > 0).mean()
    assert difference.max() <= 1 and off < (1e-4 if confidence_path == "numba" else 2e-3), off
    assert np.array_equal(pred.labels, labels_from_logits(raw[0], size))
    assert np.array_equal(pred.depth, post.depth_from_raw(raw[1], size))
    assert np.array_equal(pred.normals, post.normals_from_raw(raw[2], size))


def test_confidence_of_sure_and_unsure_pixels(confidence_path):
    logits = np.zeros((4, 8, 8), np.float32)
    logits[2, :, :4] = 30.0  # left: one class far ahead; right: all four equal
    logits[0, 0, 0] = np.nan  # a broken score gives 0, never garbage
    logits[3, 7, 7] = np.nan  # also where it is not the first class
    _, confidence = labels_and_confidence(logits, (8, 8))
    assert (confidence[1:, :2] == 255).all()
    assert (confidence[:7, 6:] == round(255 / 4)).all()
    assert confidence[0, 0] == 0 and confidence[7, 7] == 0


def test_confidence_where_the_other_classes_are_far_behind(confidence_path):
    """Scores thousands below the best (whose exponentials underflow) count as nothing, and
    one of 1e30 wins outright; an infinite one leaves no usable probability: 0."""
    logits = np.zeros((3, 6, 8), np.float32)
    logits[1] = -1e4  # exp(-1e4) underflows: two classes left, equal
    logits[2, :, :4] = -1e30  # and here only ...
    logits[1, :, :4] = 1e30  # ... class 1, far ahead of class 0
    logits[0, 5, 7] = np.inf
    labels, confidence = labels_and_confidence(logits, (12, 16))
    assert (labels[:, :6] == 1).all() and (confidence[:, :6] == 255).all()
    # beyond the bicubic taps of the columns of 1e30 and of the infinite score
    assert (confidence[:4, 12:] == round(255 / 2)).all() and (labels[:4, 12:] == 0).all()
    assert confidence[-1, -1] == 0


def test_confidence_on_the_device_path_matches_the_host():
    """The CUDA path's torch code (run on the CPU here) against the host computation."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 3.0, size=(6, 12, 16)).astype(np.float32)
    scores = torch.nn.functional.interpolate(torch.from_numpy(logits)[None], size=(48, 64),
                                             mode="bicubic", align_corners=False)[0]
    on_device = confidence_on_device(scores).numpy()
    _, host = labels_and_confidence(logits, (48, 64))
    difference = np.abs(on_device.astype(int) - host)
    assert on_device.dtype == np.uint8 and (difference <= 2).mean() >= 0.99


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "opencv"])
@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("classes", [6, 12, 13, 40])
def test_shared_work_gives_the_same_maps(monkeypatch, compiled, workers, classes):
    """However the work is shared between threads (bands of rows with numba, runs of classes
    without; the last share also making the normals), labels, depth and normals are those of
    the parts made one by one."""
    import hydranet_ros.postprocess as post
    monkeypatch.setattr(post, "WORKERS", workers)
    monkeypatch.setattr(post, "PARALLEL_MIN_SCORES", 0)  # share even these small frames
    size = (48, 64)
    if compiled:
        if post.resized_argmax is None:
            require(f"the compiled labels need numba ({post.RESIZED_ARGMAX_MISSING})")
        shares = post._row_bands(size, classes, post.NORMALS_COST)
        assert len(shares) == workers and shares[-1][1] == size[0]
    else:
        monkeypatch.setattr(post, "resized_argmax", None)
        monkeypatch.setattr(post, "_warned_without_numba", True)
        shares = post._class_runs(classes, post.NORMALS_COST_OPENCV)
        assert shares[-1][1] == classes
    assert shares[0][0] == 0
    assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(shares, shares[1:]))
    rng = np.random.default_rng(classes)
    raw = (rng.normal(size=(classes, 12, 16)).astype(np.float32),
           rng.normal(size=(1, 12, 16)).astype(np.float32),
           rng.normal(size=(3, 12, 16)).astype(np.float32))
    raw[0][classes - 1] = raw[0][0]  # a tie across shares: the first class must still win
    pred = postprocess(raw, size)
    resized = np.stack([cv2.resize(plane, size[::-1], interpolation=cv2.INTER_CUBIC)
                        for plane in raw[0]])
    assert np.array_equal(pred.labels, resized.argmax(axis=0))
    assert np.array_equal(pred.depth, post.depth_from_raw(raw[1], size))
    assert np.array_equal(pred.normals, post.normals_from_raw(raw[2], size))


def test_without_numba_one_warning_and_the_same_labels(monkeypatch):
    import hydranet_ros.postprocess as post
    logits = np.random.default_rng(2).normal(size=(40, 12, 16)).astype(np.float32)
    compiled = labels_from_logits(logits, (48, 64))
    monkeypatch.setattr(post, "resized_argmax", None)
    monkeypatch.setattr(post, "RESIZED_ARGMAX_MISSING", "ImportError: No module named 'numba'")
    monkeypatch.setattr(post, "_warned_without_numba", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = labels_from_logits(logits, (48, 64))
        second = labels_from_logits(logits, (48, 64))
    assert [w.category for w in caught] == [RuntimeWarning]  # once, not per frame
    assert "numba is not usable" in str(caught[0].message) and "\n" not in str(caught[0].message)
    assert np.array_equal(first, compiled) and np.array_equal(second, compiled)
