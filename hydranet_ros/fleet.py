"""Annotating a fleet's recordings: many rosbag2 bags at once on Ray.

A local Ray instance by default, an existing cluster with an address; the same code either
way. Each worker is a Ray actor that loads the model and engine once and then annotates whole
bags with the single-process tool's ``BagAnnotator``, so every output equals what
``hydranet-bag`` writes for that bag. Nothing is lost and nothing is done twice:

- each output is written inside a hidden partial folder beside its final one and moved out
  only when complete (``staging.py``, as hydranet-bag does), with a record of its input
  (files, sizes, times) and settings inside it;
- a rerun skips the bags whose output carries the same record, refuses to replace an output
  made from another input or with other settings (unless ``overwrite``), and redoes the rest;
- a bag that cannot be read, or whose worker dies, is reported with its reason and the
  others go on (a rerun retries it; a worker that died is replaced); workers that cannot
  start (a preset that does not fit the weights, no CUDA) stop the run with that reason,
  unless others started;
- bags inside the output folder (earlier outputs, when it lies in a searched folder) are
  never taken as inputs;
- on Ctrl-C or SIGTERM the workers are stopped, finished outputs stay, and the partial ones
  (never under a final name) are removed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .entry_points import stop_signals_as_interrupt
from .errors import HydraNetError, one_line
from .paths import overlapping
from .staging import (PARTIAL, RECORD, Owner, looks_partial, read_record, remove_partials,
                      this_process)

#: Written into the output folder at the end of a run.
REPORT = "fleet_report.json"
#: Workers started in place of ones that died, at most, per run (a bag that kills every
#: worker it is given fails alone; a machine that kills them all ends the run).
REPLACEMENTS = 4
INSTALL_HINT = "pip install -e .[fleet] (or pip install ray)"


@dataclass(frozen=True)
class Settings:
    """Everything that decides an output's content (the record compares these)."""
    image_topic: str
    camera_info_topic: str | None
    weights: str
    weights_digest: str
    preset: str | None
    backend: str
    precision: str
    calibration: str | None
    device: str
    outputs: tuple[str, ...]
    every: int = 1
    max_depth: float = 0.0
    storage: str | None = None


@dataclass
class Job:
    input: Path
    output: Path
    frames: int  # image messages in the bag, for the progress bar
    record: dict = field(default_factory=dict)


def ray_module():
    try:
        import ray
    except ImportError as exc:
        raise HydraNetError(f"annotating on Ray needs the 'ray' package ({exc}): "
                            f"{INSTALL_HINT}") from None
    return ray


def is_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


def find_bags(inputs: list[str], outputs: Path | None = None) -> list[Path]:
    """Bags named directly, by glob, or found (recursively) inside folders; each once. Bags
    that a glob or a search finds inside ``outputs`` (the output folder: earlier outputs,
    when it lies inside a searched folder) or inside partial folders are not inputs; a bag
    named directly always is (``plan`` refuses it if its output would be itself)."""
    found: list[Path] = []
    for item in inputs:
        searched = glob.has_magic(item)
        matches = [Path(p) for p in sorted(glob.glob(item))] if searched else [Path(item)]
        if not matches:
            raise HydraNetError(f"no bag matches {item}")
        for path in matches:
            if is_bag(path):
                found.extend([path] if not searched or not _is_output(path, outputs) else [])
            elif path.is_dir():
                inside = sorted(p.parent for p in path.rglob("metadata.yaml"))
                if not inside:
                    raise HydraNetError(f"{path} holds no rosbag2 bag (no metadata.yaml)")
                found.extend(p for p in inside if not _is_output(p, outputs))
            elif path.exists():
                raise HydraNetError(f"{path} is not a rosbag2 bag folder (with metadata.yaml)")
            else:
                raise HydraNetError(f"{path} does not exist")
    if not found:
        raise HydraNetError(f"every bag found is inside the output folder {outputs}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    names = [p.name for p in unique]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise HydraNetError(f"several bags are named {', '.join(clashes)}; their outputs "
                            "would clash in one output folder")
    return unique


def _is_output(bag: Path, outputs: Path | None) -> bool:
    """Whether ``bag`` lies in the output folder or in a partial folder."""
    bag = bag.resolve()
    if any(looks_partial(part) for part in [bag, *bag.parents]):
        return True
    return outputs is not None and (bag == outputs.resolve() or outputs.resolve() in bag.parents)


def input_fingerprint(bag: Path) -> list[list]:
    """The bag's files with sizes and modification times: a changed bag is a new input."""
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(bag.iterdir()) if p.is_file()]


def count_frames(bag: Path, image_topic: str, every: int = 1) -> int:
    """The frames to annotate (every ``every``-th image on ``image_topic``) according to
    the bag's metadata (0 if unreadable: the worker reports why)."""
    from .ros.bag import selected_frames
    try:
        from rosbags.rosbag2 import Reader
        with Reader(bag) as reader:
            return selected_frames(reader, image_topic, every)
    except Exception:  # noqa: BLE001  a corrupt bag is reported by the worker that opens it
        return 0


def record_for(bag: Path, settings: Settings) -> dict:
    return {"input": str(bag), "input_files": input_fingerprint(bag),
            "settings": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in asdict(settings).items()}}


def plan(bags: list[Path], out_dir: Path, settings: Settings, overwrite: bool
         ) -> tuple[list[Job], list[Path], list[tuple[Path, str]]]:
    """(jobs to run, bags already done, bags refused with the reason)."""
    jobs, done, refused = [], [], []
    for bag in bags:
        output = out_dir / bag.name
        if overlapping(bag, output):
            refused.append((bag, f"its output {output} would be the bag itself, hold it or "
                                 "lie inside it; choose another --out"))
            continue
        if looks_partial(output):
            refused.append((bag, f"its name looks like a partial output's (.NAME{PARTIAL}...), "
                                 "which a later run would remove; rename the bag"))
            continue
        record = record_for(bag, settings)
        existing = read_record(output) if output.exists() else None
        if existing == record and not overwrite:
            done.append(bag)
            continue
        if output.exists() and existing is None:  # not ours: never replaced
            refused.append((bag, f"{output} exists and is not an output of this tool; "
                                 "move it away or choose another --out"))
            continue
        if output.exists() and not overwrite:
            refused.append((bag, f"{output} was made from another input or with other "
                                 "settings; use --overwrite to replace it"))
            continue
        jobs.append(Job(bag, output, count_frames(bag, settings.image_topic, settings.every),
                        record))
    return jobs, done, refused


def worker_error(exc: BaseException) -> str:
    """A worker's error as one line of the report and of the driver's output."""
    text = one_line(exc)
    return text if isinstance(exc, HydraNetError) else f"{type(exc).__name__}: {text}"


class BagWorker:
    """A Ray actor's state: the engine loaded once, bags annotated one after another."""

    def __init__(self, settings: Settings, threads: int | None, core: int | None) -> None:
        if core is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {core})
        if threads:  # Ray gives a worker OMP_NUM_THREADS=1; the engine should use its cores
            os.environ["OMP_NUM_THREADS"] = str(threads)
        import cv2
        import torch

        from .memory import keep_freed_memory
        keep_freed_memory()  # a frame loop, as in hydranet-bag and the node
        if threads:
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
        from .predictor import Predictor
        started = time.perf_counter()
        self.notes: list[str] = []
        self.settings = settings
        self.core = core
        #: Why the engine could not be made: kept for describe() to report as one line,
        #: where raising would reach the driver as Ray's traceback of a dead actor.
        self.error: str | None = None
        try:
            self.predictor = Predictor.from_weights(
                settings.weights, settings.preset, settings.device, settings.backend,
                settings.precision, progress=False, log=self.notes.append,
                warn=self.notes.append, calibration=settings.calibration)
        except HydraNetError as exc:
            self.error = worker_error(exc)
        self.setup_s = time.perf_counter() - started

    def describe(self) -> dict:
        if self.error is not None:
            return {"pid": os.getpid(), "error": self.error}
        return {"pid": os.getpid(), "host": this_process()[0],
                "engine": self.predictor.engine.describe(),
                "threads": torch_threads(),
                "setup_s": round(self.setup_s, 2), "core": self.core, "notes": self.notes}

    def annotate(self, job: Job, progress=None) -> dict:
        """One bag, into a partial output renamed when complete; never raises."""
        from .outputs import OutputSettings
        from .ros.bag import BagAnnotator, BagRequest
        if self.error is not None:
            return {"bag": str(job.input), "error": self.error, "warnings": []}
        warnings: list[str] = []
        s = self.settings
        # the plan replaces only outputs of this tool (with a record), and the annotator
        # writes aside, recording job.record in the output once it is complete
        request = BagRequest(job.input, job.output, s.image_topic, s.camera_info_topic,
                             s.outputs, s.storage, s.every, batch=1,
                             settings=OutputSettings(max_depth=s.max_depth), overwrite=True,
                             record=job.record, keep_interrupted=False)
        started = time.perf_counter()

        def on_frame(n: int) -> None:
            if n and progress is not None:
                progress.add.remote(n)
        try:
            result = BagAnnotator(request, self.predictor, warn=warnings.append).run(on_frame)
            if result.interrupted:
                raise HydraNetError("interrupted")
        except Exception as exc:  # noqa: BLE001  reported with its reason; the others go on
            return {"bag": str(job.input), "error": worker_error(exc), "warnings": warnings}
        return {"bag": str(job.input), "output": str(job.output), "frames": result.frames,
                "skipped_frames": result.skipped, "frames_without_cloud": result.without_cloud,
                "seconds": round(time.perf_counter() - started, 3),
                "where": {k: round(v, 3) for k, v in result.seconds.items()},
                "warnings": warnings, "pid": os.getpid()}


class Progress:
    """A counter the workers add their frames to (a Ray actor; the driver reads it)."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, frames: int) -> None:
        self.frames += frames

    def total(self) -> int:
        return self.frames


@dataclass
class FleetOptions:
    workers: int = 2
    ray_address: str | None = None
    threads_per_worker: int | None = None
    pin_cores: bool = False
    overwrite: bool = False


def run_fleet(inputs: list[str], out_dir: Path, settings: Settings, options: FleetOptions,
              say: Callable[[str], None] = print, bar=None) -> dict:
    """Annotate every bag; the JSON report (also written to out_dir/REPORT)."""
    ray = ray_module()
    out_dir = out_dir.resolve()
    bags = find_bags(inputs, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_partials(out_dir):
        say(f"removed the partial output of an interrupted run: {stale.name}")
    jobs, done, refused = plan(bags, out_dir, settings, options.overwrite)
    for bag in done:
        say(f"skipped {bag.name}: already annotated with these settings")
    for bag, why in refused:
        say(f"refused {bag.name}: {why}")
    report = {"bags": len(bags), "already_done": [str(b) for b in done],
              "refused": [{"bag": str(b), "reason": r} for b, r in refused],
              "annotated": [], "failed": [], "frames": 0, "workers": 0}
    started = time.perf_counter()
    if bar is not None:
        bar.reset(total=sum(j.frames for j in jobs))
    if jobs:
        report.update(_run_on_ray(ray, jobs, settings, options, say, bar))
    report["seconds"] = round(time.perf_counter() - started, 2)
    (out_dir / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    return report


def _run_on_ray(ray, jobs: list[Job], settings: Settings, options: FleetOptions,
                say: Callable[[str], None], bar) -> dict:
    local = options.ray_address in (None, "", "local")
    workers = max(1, min(options.workers, len(jobs)))
    t0 = time.perf_counter()
    if local:
        ray.init(num_cpus=max(options.workers, 1), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=options.ray_address, log_to_driver=False, configure_logging=False)
    stop_signals_as_interrupt()  # ray.init set its own: partial outputs would stay behind
    ray_start_s = time.perf_counter() - t0
    gpus = 1 if settings.device.startswith("cuda") or (
        settings.device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1) else 0
    cores = os.cpu_count() or 1
    # a local worker uses its share of the cores (Ray's default would be one thread)
    threads = options.threads_per_worker or (max(1, cores // workers) if local else None)
    remote_worker = ray.remote(num_cpus=1, num_gpus=gpus)(BagWorker)
    progress = ray.remote(num_cpus=0)(Progress).remote()
    actors = []
    results: dict = {"annotated": [], "failed": []}
    replacements = REPLACEMENTS
    #: each worker's process, whose partial outputs are removed once it stopped
    owners: dict[int, Owner] = {}

    def core_of(i: int) -> int | None:
        return i % cores if options.pin_cores and local else None
    try:
        actors = [remote_worker.remote(settings, threads, core_of(i)) for i in range(workers)]
        t1 = time.perf_counter()
        described = ray.get([a.describe.remote() for a in actors])
        setup_s = time.perf_counter() - t1
        actors, described = _started(ray, actors, described, say)
        owners.update({id(a): (d["host"], d["pid"]) for a, d in zip(actors, described)})
        workers = len(actors)
        for d in described:
            say(f"worker pid {d['pid']}: {d['engine']}, {d['threads']} thread(s), ready in "
                f"{d['setup_s']} s"
                + (f", pinned to core {d['core']}" if d["core"] is not None else ""))
        pending = list(jobs)
        running = {}
        idle = list(actors)
        t2 = time.perf_counter()
        while pending or running:
            while idle and pending:
                actor, job = idle.pop(), pending.pop(0)
                running[actor.annotate.remote(job, progress)] = (actor, job)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            if bar is not None:
                bar.n = ray.get(progress.total.remote())
                bar.refresh()
            for ref in ready:
                actor, job = running.pop(ref)
                outcome, alive = _outcome(ray, ref, job)
                if alive:
                    idle.append(actor)
                else:  # the worker could not remove its partial output
                    _remove_partials_of(job, {owners[id(actor)]})
                    if pending and replacements > 0:
                        replacements -= 1
                        started_one = _replacement(ray, remote_worker, settings, threads,
                                                   core_of(len(actors)), say)
                        if started_one is not None:
                            actors.append(started_one[0])
                            idle.append(started_one[0])
                            owners[id(started_one[0])] = started_one[1]
                for warning in outcome.get("warnings", []):
                    say(f"{job.input.name}: {warning}")
                if "error" in outcome:
                    results["failed"].append(outcome)
                    say(f"failed {job.input.name}: {outcome['error']}")
                else:
                    results["annotated"].append(outcome)
                    rate = outcome["frames"] / outcome["seconds"] if outcome["seconds"] else 0.0
                    say(f"done {job.input.name}: {outcome['frames']} frames in "
                        f"{outcome['seconds']:.1f} s ({rate:.1f} frames/s) -> {outcome['output']}")
            if pending and not idle and not running:  # every worker died: the rest wait
                for left in pending:
                    results["failed"].append({"bag": str(left.input),
                                              "error": "not annotated: every worker stopped"})
                    say(f"failed {left.input.name}: not annotated: every worker stopped")
                pending.clear()
        annotate_s = time.perf_counter() - t2
    except KeyboardInterrupt:
        say("interrupted: stopping the workers; finished outputs are kept")
        for actor in actors:
            ray.kill(actor)
        for job in jobs:
            _remove_partials_of(job, set(owners.values()))
        raise
    finally:
        if local:
            ray.shutdown()
    frames = sum(a["frames"] for a in results["annotated"])
    results.update({"frames": frames, "workers": workers, "ray_start_s": round(ray_start_s, 2),
                    "worker_setup_s": round(setup_s, 2), "annotate_s": round(annotate_s, 2),
                    "frames_per_s": round(frames / annotate_s, 2) if annotate_s else None,
                    "worker_engines": [d["engine"] for d in described]})
    return results


def _remove_partials_of(job: Job, stopped: set[Owner]) -> None:
    """What workers of this run that stopped left of ``job``'s output (never a final
    output); another run's partial outputs of the same name are left alone."""
    remove_partials(job.output.parent, job.output.name, owners=stopped)


def _replacement(ray, remote_worker, settings: Settings, threads: int | None,
                 core: int | None, say: Callable[[str], None]) -> tuple[object, Owner] | None:
    """A new worker in place of one that died, with its process, or None (said) where it
    cannot start."""
    actor = remote_worker.remote(settings, threads, core)
    try:
        described = ray.get(actor.describe.remote(), timeout=300)
    except Exception as exc:  # noqa: BLE001  Ray's errors of a worker that cannot start
        described = {"error": f"{type(exc).__name__}: {one_line(exc)}"}
    if "error" in described:
        ray.kill(actor)
        say(f"a worker stopped and none could start in its place: {described['error']}")
        return None
    say(f"a worker stopped; worker pid {described['pid']} started in its place")
    return actor, (described["host"], described["pid"])


def _started(ray, actors: list, described: list[dict], say: Callable[[str], None]
             ) -> tuple[list, list[dict]]:
    """The workers that made their engine, with their descriptions. Those that could not
    are stopped and said; if none could, the run stops with that one-line reason (the same
    for every bag: a preset that does not fit the weights, a device the machine lacks)."""
    failed = [d for d in described if "error" in d]
    if len(failed) == len(described):
        raise HydraNetError(f"no worker could start: {failed[0]['error']}")
    for actor, d in zip(actors, described):
        if "error" in d:
            say(f"worker pid {d['pid']} could not start, going on without it: {d['error']}")
            ray.kill(actor)
    kept = [(a, d) for a, d in zip(actors, described) if "error" not in d]
    return [a for a, _ in kept], [d for _, d in kept]


def _outcome(ray, ref, job: Job) -> tuple[dict, bool]:
    """A bag's outcome as annotate returns it, and whether its worker is still alive.

    annotate reports the bag's own problems itself; what reaches here as a Ray error is a
    HydraNetError raised around it (one line, as annotate's), or a worker that died (killed,
    out of memory, crashed): that bag fails with the reason and the others go on. Any other
    exception is a bug and keeps its traceback."""
    exceptions = ray.exceptions
    try:
        return ray.get(ref), True
    except exceptions.RayTaskError as exc:
        if not isinstance(exc.cause, HydraNetError):
            raise
        return {"bag": str(job.input), "error": worker_error(exc.cause)}, True
    except exceptions.RayActorError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"bag": str(job.input), "error": f"its worker stopped: {reason}"}, False


def weights_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()
