"""hydranet-fleet: many bags on a local Ray instance with 2 workers; outputs equal to the
single-process hydranet-bag, a corrupt bag reported, reruns skip what is done, and an
interrupted run resumes without leaving half-written outputs under final names."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import import_or_skip

import_or_skip("ray", "hydranet-fleet needs Ray (pip install -e .[fleet])")
import_or_skip("rosbags", "hydranet-fleet needs rosbags (pip install -e .[fleet])")

from hydranet_ros.cli import fleet as fleet_cli  # noqa: E402
from hydranet_ros.fleet import PARTIAL, RECORD, REPORT, find_bags  # noqa: E402
from test_bag import frames, read_bag, write_bag  # noqa: E402

#: The engine of every run here; one thread per worker, as Ray gives each worker by default.
ENGINE = ["--weights", "synthetic", "--backend", "torch", "--precision", "fp32",
          "--device", "cpu", "--threads-per-worker", "1"]


def make_bags(root: Path, counts=(3, 4, 5), broken: bool = True) -> Path:
    for i, count in enumerate(counts):
        write_bag(root / f"drive_{i}", "mcap", frames(count))
    if broken:
        write_bag(root / "broken", "mcap", frames(2))
        mcap = next((root / "broken").glob("*.mcap"))
        mcap.write_bytes(mcap.read_bytes()[:400])  # truncated: not readable
    return root


def fleet(args: list[str]) -> int:
    return fleet_cli.main(args)


def test_many_bags_on_two_workers(tmp_path, capsys):
    bags = make_bags(tmp_path / "bags")
    out = tmp_path / "out"
    args = [str(bags), "--out", str(out), "--image-topic", "/cam/image_raw", "--workers", "2",
            *ENGINE]
    assert fleet(args) == 1  # the corrupt bag failed; the others are done
    err = capsys.readouterr().err
    assert "failed broken: " in err and "is not a readable rosbag2" in err
    report = json.loads((out / REPORT).read_text())
    assert report["bags"] == 4 and report["workers"] == 2 and report["frames"] == 12
    assert sorted(Path(a["bag"]).name for a in report["annotated"]) == ["drive_0", "drive_1",
                                                                        "drive_2"]
    assert [Path(f["bag"]).name for f in report["failed"]] == ["broken"]
    assert len({a["pid"] for a in report["annotated"]}) == 2  # both workers worked
    assert report["ray_start_s"] > 0 and report["frames_per_s"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["drive_0", "drive_1", "drive_2", REPORT]
    # each output is what the single-process tool writes for that bag (same thread count)
    for name in ("drive_0", "drive_2"):
        single = tmp_path / f"single_{name}"
        done = subprocess.run([sys.executable, "-m", "hydranet_ros.cli.bag", str(bags / name),
                               str(single), "--image-topic", "/cam/image_raw", *ENGINE[:8]],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert read_bag(out / name) == read_bag(single), name
        record = json.loads((out / name / RECORD).read_text())
        assert record["input"] == str((bags / name).resolve())
        assert record["settings"]["outputs"] == ["labels", "depth", "normals", "points"]
    # a rerun skips what is done; the corrupt bag fails again
    assert fleet(args) == 1
    err = capsys.readouterr().err
    assert err.count("already annotated with these settings") == 3
    # other settings: refused unless --overwrite
    other = args + ["--outputs", "labels"]
    assert fleet([a for a in other if a != str(bags)] + [str(bags / "drive_1")]) == 1
    assert "was made from another input or with other settings" in capsys.readouterr().err
    assert fleet([a for a in other if a != str(bags)] + [str(bags / "drive_1"),
                                                         "--overwrite"]) == 0
    assert "/cam/depth/image" not in read_bag(out / "drive_1")
    assert not list(out.glob(f".*{PARTIAL}*"))


def test_outputs_never_replace_inputs_or_foreign_folders(tmp_path, capsys):
    """An --out that holds the bags (their outputs would be the bags themselves) and an
    output name taken by something this tool did not make are refused, --overwrite or not,
    and the bags stay as they were."""
    root = make_bags(tmp_path / "bags", counts=(2,), broken=False)
    (bag,) = find_bags([str(root)])
    before = read_bag(bag)
    common = ["--image-topic", "/cam/image_raw", "--workers", "1", *ENGINE, "--overwrite"]
    assert fleet([str(bag), "--out", str(root), *common]) == 1
    assert "would be the bag itself, hold it or lie inside it" in capsys.readouterr().err
    assert read_bag(bag) == before
    out = tmp_path / "out"
    (out / bag.name).mkdir(parents=True)
    (out / bag.name / "todo.txt").write_text("keep me")
    assert fleet([str(bag), "--out", str(out), *common]) == 1
    assert "exists and is not an output of this tool" in capsys.readouterr().err
    assert (out / bag.name / "todo.txt").read_text() == "keep me"


def test_inputs_as_globs_and_folders(tmp_path):
    bags = make_bags(tmp_path / "bags", broken=False)
    assert [p.name for p in find_bags([str(bags / "drive_*")])] == ["drive_0", "drive_1",
                                                                     "drive_2"]
    assert [p.name for p in find_bags([str(bags)])] == ["drive_0", "drive_1", "drive_2"]
    with pytest.raises(Exception, match="no bag matches"):
        find_bags([str(bags / "nothing_*")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="holds no rosbag2 bag"):
        find_bags([str(tmp_path / "empty")])


def test_outputs_inside_a_searched_folder_are_not_inputs(tmp_path):
    """An --out inside the folder searched for bags (or matched by its glob): the earlier
    outputs there, and partial folders, are not bags to annotate (a rerun found them and
    refused to start: "several bags are named ..."); a bag named directly still is."""
    from hydranet_ros.fleet import count_frames
    bags = make_bags(tmp_path / "recs", counts=(2, 3), broken=False)
    out = bags / "annotated"
    write_bag(out / "drive_0", "mcap", frames(1))
    write_bag(bags / f".drive_1{PARTIAL}host-1-abcd" / "drive_1", "mcap", frames(1))
    expected = [bags / "drive_0", bags / "drive_1"]
    assert find_bags([str(bags)], out) == [p.resolve() for p in expected]
    assert find_bags([str(bags / "*")], out) == [p.resolve() for p in expected]
    assert find_bags([str(out / "drive_0")], out) == [(out / "drive_0").resolve()]
    with pytest.raises(Exception, match="several bags are named drive_0"):
        find_bags([str(bags)])  # without knowing the output folder, as before
    assert [count_frames(bags / "drive_1", "/cam/image_raw", every) for every in (1, 2, 3)] \
        == [3, 2, 1]


def test_a_worker_that_dies_is_replaced(tmp_path):
    """A worker killed mid-bag (out of memory, say): that bag fails with the reason, a new
    worker starts in its place, and the other bags are annotated (they all failed with
    "every worker stopped")."""
    bags = tmp_path / "bags"
    write_bag(bags / "drive_0", "mcap", frames(200, 320, 240))
    for name in ("drive_1", "drive_2"):
        write_bag(bags / name, "mcap", frames(2))
    out = tmp_path / "out"
    log = tmp_path / "fleet.log"
    with open(log, "w") as stream:
        proc = subprocess.Popen([sys.executable, "-m", "hydranet_ros.cli.fleet", str(bags),
                                 "--out", str(out), "--image-topic", "/cam/image_raw",
                                 "--workers", "1", *ENGINE], stdout=stream,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob(f".drive_0{PARTIAL}*")):  # the worker writes drive_0
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        (pid,) = re.findall(r"worker pid (\d+):", log.read_text())
        os.kill(int(pid), signal.SIGKILL)
        code = proc.wait(240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert code == 1, text
    assert "failed drive_0: its worker stopped" in text, text
    assert "started in its place" in text and "every worker stopped" not in text, text
    assert "done drive_1" in text and "done drive_2" in text, text
    assert sorted(p.name for p in out.iterdir()) == ["drive_1", "drive_2", REPORT]


def test_an_interrupted_run_resumes(tmp_path):
    """Ctrl-C (to the whole process group, as a terminal does) after the first bag: exit
    130, finished outputs kept, nothing half-written left; the same command again annotates
    the rest and skips the finished one."""
    bags = make_bags(tmp_path / "bags", counts=(3, 30, 30), broken=False)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hydranet_ros.cli.fleet", str(bags), "--out", str(out),
               "--image-topic", "/cam/image_raw", "--workers", "1", *ENGINE]
    log = tmp_path / "fleet.log"
    with open(log, "w") as stream:
        proc = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "done drive_0" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 130, log.read_text()
    assert (out / "drive_0" / RECORD).is_file()
    assert not list(out.glob(f".*{PARTIAL}*")), sorted(p.name for p in out.iterdir())
    assert not (out / "drive_2").exists() or (out / "drive_2" / RECORD).is_file()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "skipped drive_0: already annotated" in again.stderr
    for name in ("drive_1", "drive_2"):
        assert (out / name / RECORD).is_file()
        assert len(read_bag(out / name)["/cam/segmentation/labels"]) == 30


def test_a_worker_that_cannot_start_is_one_line(tmp_path):
    """A HydraNetError in the workers' set-up (here a preset that does not fit the weights)
    is the same for every bag: the run stops with that one line, not Ray's traceback of a
    dead actor, and leaves no output."""
    bags = make_bags(tmp_path / "bags", counts=(2,), broken=False)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "hydranet_ros.cli.fleet", str(bags), "--out",
                           str(out), "--image-topic", "/cam/image_raw", "--workers", "1",
                           *ENGINE, "--preset", "nyud"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, done.stderr
    assert "hydranet-fleet: error: no worker could start: " in lines[0]
    assert "has 6 classes but preset 'nyud' has 40" in lines[0]
    assert not (out / "drive_0").exists() and not list(out.glob(f".*{PARTIAL}*"))


def test_a_bad_bag_is_one_line_and_outputs_have_their_final_names(tmp_path, capsys):
    """A bag rosbags cannot read (its YAML error spans lines) fails on one line and the
    others are finished; every output's files carry its final name: nothing in it is hidden
    or named like a leftover partial output, which a user (or a cleanup) might delete."""
    bags = make_bags(tmp_path / "bags", counts=(2,), broken=False)
    write_bag(bags / "drive_1", "sqlite3", frames(2))
    write_bag(bags / "broken", "mcap", frames(1))
    (bags / "broken" / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n")
    out = tmp_path / "out"
    assert fleet([str(bags), "--out", str(out), "--image-topic", "/cam/image_raw",
                  "--workers", "1", *ENGINE]) == 1
    err = capsys.readouterr().err
    report = json.loads((out / REPORT).read_text())
    (failed,) = report["failed"]
    assert Path(failed["bag"]).name == "broken" and "\n" not in failed["error"]
    assert "is not a readable rosbag2: ReaderError: Could not load YAML" in failed["error"]
    assert f"hydranet-fleet: failed broken: {failed['error']}\n" in err
    assert sorted(Path(a["bag"]).name for a in report["annotated"]) == ["drive_0", "drive_1"]
    for name, data in (("drive_0", "drive_0.mcap"), ("drive_1", "drive_1.db3")):
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(
            [data, RECORD, "metadata.yaml"])
        assert f"- {data}\n" in (out / name / "metadata.yaml").read_text()
        assert read_bag(out / name)["/cam/segmentation/labels"]
    assert sorted(p.name for p in out.iterdir()) == ["drive_0", "drive_1", REPORT]


def test_worker_errors_reach_the_driver_as_one_line(tmp_path):
    """What Ray raises in the driver: a HydraNetError around annotate becomes that bag's
    one-line failure; a dead worker fails its bag (the others go on) and is not reused; a
    bug keeps its traceback. And a bag named like a partial output is refused, as a later
    run would remove its output."""
    import ray

    from hydranet_ros.errors import HydraNetError
    from hydranet_ros.fleet import Job, Settings, _outcome, plan

    class FakeRay:
        exceptions = ray.exceptions

        def __init__(self, error: Exception) -> None:
            self.error = error

        def get(self, ref):
            raise self.error

    job = Job(tmp_path / "drive_7", tmp_path / "out" / "drive_7", 3)
    task_error = ray.exceptions.RayTaskError("annotate", "Traceback ...",
                                             HydraNetError("bad\nbag")).as_instanceof_cause()
    assert _outcome(FakeRay(task_error), None, job) == (
        {"bag": str(job.input), "error": "bad bag"}, True)
    outcome, alive = _outcome(FakeRay(ray.exceptions.ActorDiedError()), None, job)
    assert not alive and outcome["error"] == ("its worker stopped: The actor died "
                                             "unexpectedly before finishing this task.")
    bug = ray.exceptions.RayTaskError("annotate", "Traceback ...", KeyError("x"))
    with pytest.raises(ray.exceptions.RayTaskError):
        _outcome(FakeRay(bug.as_instanceof_cause()), None, job)
    hidden = tmp_path / f".drive{PARTIAL}1234"
    hidden.mkdir()
    (hidden / "metadata.yaml").write_text("")
    settings = Settings("/cam/image_raw", None, "synthetic", "0", None, "torch", "fp32", None,
                        "cpu", ("labels",))
    jobs, done, refused = plan([hidden], tmp_path / "out", settings, overwrite=False)
    assert not jobs and not done and "looks like a partial output's" in refused[0][1]
