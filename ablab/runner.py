"""Run a study: validate everything, then run the trials that have not ended.

Order matters: every check a user can fail (the sweep file, every trial config, the
results folder, the tracking URI and server, the Ray address, resources against the
cluster) runs before the study folder is written or the first trial starts; then the
study's lock is taken, so one run at a time writes it.

Continuing a study does not restore Ray Tune's experiment snapshot: the trial records
are the truth. Each run is a fresh Tuner over the trials whose records have not ended
(a trial cut short resumes from its last checkpoint), with a fresh scheduler that
rebuilds its memory from the records, and fresh callbacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ablab import __version__, recovery, registry
from ablab import lock as lock_mod
from ablab.phases import mark
from ablab.errors import UserError
from ablab.expand import TrialSpec, directions_of, expand, fingerprint
from ablab.records import ENDED, StudyPaths, TrialState, load_records, read_study_file, write_json_atomic
from ablab.spec import Study, check_tracking_uri, load_study, mask_uri
from ablab.tracking import Tracker, git_commit, resolve_uri

CONFIRM_ABOVE = 1000  # trials; larger grids need --yes
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's nodes use the loopback address
CONNECT_TIMEOUT_S = 15  # to reach a Ray cluster's address before giving up


@dataclass(frozen=True)
class Prepared:
    """A validated study, ready to run."""

    study: Study
    """The parsed sweep file (after --set)."""
    trials: list[TrialSpec]
    """Every trial of the study, in grid order."""
    paths: StudyPaths
    """The study's folders (not yet written)."""
    file: str
    """The sweep file as given on the command line."""
    resuming: bool
    """Whether the study exists and this run continues it."""
    tracking_uri: str
    """Where MLflow tracks (credential-free)."""
    directions: dict[str, str]
    """metric -> max | min, as the trainable declares them."""
    report_changes: tuple[str, ...] = ()
    """Report-only settings that differ from the study's previous run."""
    launch_dir: str = ""
    """The folder the driver started in, re-entered by name before Tune runs ("" = stay)."""
    launch_inode: int = 0
    """launch_dir's inode when the run began (a Ray job's folder is replaced: see _reenter)."""


def prepare(file: str, overrides=(), resume: bool = False, yes: bool = False) -> Prepared:
    """Everything checked that can be checked without Ray; writes nothing."""
    study = load_study(file, overrides)
    trials = expand(study, file)
    if len(trials) > CONFIRM_ABOVE and not yes:
        raise UserError(
            f"this study expands to {len(trials)} trials (more than {CONFIRM_ABOVE})", file=file,
            hint="check grid/ablations/seeds, or pass --yes to run it anyway",
        )
    paths = StudyPaths(Path(study.storage), study.name)
    _check_writable(paths, file)
    exists = paths.study_file.exists()
    if resume and not exists:
        raise UserError(f"--resume: no study named {study.name!r} in {paths.storage}", file=file, key="name")
    running = lock_mod.holder(paths)
    if running is not None:  # said before Ray starts; the lock itself is taken after
        raise lock_mod.busy(paths, running)
    changes: tuple[str, ...] = ()
    if exists:
        previous = read_study_file(paths)
        if previous.get("fingerprint") != fingerprint(study, trials):
            raise UserError(
                f"a different study named {study.name!r} already exists in {paths.dir}", file=file, key="name",
                hint="a setting that changes results (the trials, metric, mode, early stopping, max_failures...) "
                f"changed since it ran: give the study a new name, or delete {paths.dir} to start over",
            )
        old = previous.get("settings") or {}
        now = study.model_dump(mode="json")
        changes = tuple(k for k in ("metrics", "description") if k in old and old[k] != now[k])
    uri = resolve_uri(study.tracking.uri, paths.default_tracking_uri)
    try:
        check_tracking_uri(uri)
    except ValueError as exc:
        raise UserError(str(exc), file=file, key="tracking.uri", value=mask_uri(uri)) from None
    module = registry.load(study.trainable)
    return Prepared(study, trials, paths, file, exists, uri, directions_of(module), changes)


def _check_writable(paths: StudyPaths, file: str) -> None:
    """The results folder can be created and written, checked without creating it."""
    folder = paths.dir
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the results folder {paths.dir} ({folder} is not a writable folder)",
                        file=file, key="storage")


def _check_address(address: str) -> None:
    """A HOST:PORT that answers within CONNECT_TIMEOUT_S, or one UserError (Ray would wait minutes)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError("not a Ray address", key="--address", value=address, allowed="auto or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address} within {CONNECT_TIMEOUT_S}s ({exc.strerror or exc})",
                        key="--address", hint="start it with `ray start --head`, or leave out --address "
                        "to run on this machine") from None


def _check_local_resources(study: Study) -> None:
    """Resources a local Ray would have, checked before it starts."""
    cpus = os.cpu_count() or 1
    if study.resources.cpu > cpus:
        raise UserError(f"each trial asks for {study.resources.cpu:g} CPU but this machine has {cpus}",
                        key="resources.cpu", value=study.resources.cpu, allowed=f"at most {cpus}")
    if study.resources.gpu:
        import torch

        gpus = torch.cuda.device_count()
        if study.resources.gpu > gpus:
            raise UserError(f"each trial asks for {study.resources.gpu:g} GPU but this machine has {gpus}",
                            key="resources.gpu", value=study.resources.gpu, allowed=f"at most {gpus}")


def _preload(study: Study, trials: int) -> list[str]:
    """What the workers a local Ray prestarts (one per CPU) import before the first trial:
    Ray Tune, ablab's trial and the study's trainable, but only when every one of them
    will run a trial at once. Otherwise the idle ones would hold them for nothing: 650 MB
    a worker with torch, tens of GB on a many-core machine whose trials take several CPUs
    or a GPU each."""
    cpus = os.cpu_count() or 1
    at_once = min(trials, study.max_concurrent or trials, int(cpus // study.resources.cpu))
    if study.resources.gpu or at_once < cpus:
        return []
    return ["ray.tune", "ablab.trial", registry.module_path(study.trainable)]


def init_ray(address: str | None, study: Study, trials: int) -> bool:
    """Start (or join) Ray unless this process is connected already; returns whether it
    connected now (and so is the one to disconnect)."""
    from ablab.ray_api import lean_local_start, local_system_config, ray, starts_a_local_ray

    started = not ray.is_initialized()
    if started:
        kwargs = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
        try:
            if address:
                ray.init(address=address, **kwargs)
            elif starts_a_local_ray():
                settings = local_system_config(_preload(study, trials))
                with lean_local_start():
                    ray.init(include_dashboard=False, _system_config=settings, **kwargs)
            else:  # RAY_ADDRESS (a `ray job submit` driver) or a `ray start` on this machine
                ray.init(include_dashboard=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds for a bad address
            raise UserError(f"cannot start or join Ray: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                            key="--address" if address else None) from None
    total = ray.cluster_resources()
    for res, need in (("CPU", study.resources.cpu), ("GPU", study.resources.gpu)):
        if need and total.get(res, 0) < need:
            raise UserError(
                f"each trial asks for {need} {res} but the cluster has {total.get(res, 0):g}",
                key=f"resources.{res.lower()}", value=need,
                allowed=f"at most {total.get(res, 0):g}",
            )
    return started


_ray_shutdown: threading.Thread | None = None


def _shut_down_ray() -> None:
    """Ray's processes stopped in the background while the driver writes the report; the
    thread is not a daemon, so the interpreter waits for it (before Ray's own exit hook,
    which then has nothing left to do). Called once the trials are over."""
    global _ray_shutdown
    from ablab.ray_api import ray

    _ray_shutdown = threading.Thread(target=ray.shutdown, name="ablab-ray-shutdown")
    _ray_shutdown.start()


def wait_for_ray_shutdown() -> None:
    if _ray_shutdown is not None:
        _ray_shutdown.join()


def check_before_start(prep: Prepared, address: str | None) -> bool:
    """The checks that need the tracking server and Ray; nothing is written yet. Returns
    whether Ray was started (or joined) here."""
    from ablab.ray_api import ray

    if address:
        _check_address(address)
    elif not ray.is_initialized():
        _check_local_resources(prep.study)
    if prep.tracking_uri.startswith(("http://", "https://")):
        # a server: nothing is created by asking it (the SQLite default is created later,
        # under the study's lock, in the study folder)
        try:
            _tracker(prep).check_reachable()
        except UserError as exc:
            raise UserError(exc.problem.replace(prep.tracking_uri, mask_uri(prep.tracking_uri)), key=exc.key,
                            hint=exc.hint) from None
    started = init_ray(address, prep.study, len(prep.trials))
    mark("ray started")
    return started


def _experiment(prep: Prepared) -> str:
    return prep.study.tracking.experiment or prep.study.name


def _tracker(prep: Prepared) -> Tracker:
    return Tracker(prep.tracking_uri, _experiment(prep), artifact_location=_artifacts(prep))


def _artifacts(prep: Prepared) -> str | None:
    # With the SQLite default, artifacts sit beside it in the study folder; a tracking
    # server keeps its own artifact store.
    local_store = not prep.tracking_uri.startswith(("http://", "https://"))
    return prep.paths.mlflow_artifacts.resolve().as_uri() if local_store else None


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _last_checkpoint(paths: StudyPaths, trial_ids: list[str], last_step: int | None) -> str | None:
    """The newest checkpoint an earlier run of this trial left (trial folders are named by
    id) at a step its record reached: a driver killed between a checkpoint and its record
    must not make a step vanish from the record."""
    from ablab.trial import STEP_FILE

    if last_step is None:
        return None
    best: tuple[int, float, str] | None = None
    for tid in trial_ids:
        for folder in paths.tune_dir.glob(f"*/{tid}/checkpoint_*"):
            try:
                step = int((folder / STEP_FILE).read_text())
            except (OSError, ValueError):
                continue
            if step <= last_step and (best is None or (step, folder.stat().st_mtime) > best[:2]):
                best = (step, folder.stat().st_mtime, str(folder))
    return best[2] if best else None


def _study_record(prep: Prepared, parent_id: str | None, created: str | None = None) -> dict:
    study = prep.study
    return {
        "name": study.name,
        "fingerprint": fingerprint(study, prep.trials),
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source_file": str(Path(prep.file).resolve()),
        "tracking_uri": prep.tracking_uri,
        "experiment": _experiment(prep),
        "parent_run_id": parent_id,
        "directions": prep.directions,
        "settings": study.model_dump(mode="json", exclude={"base", "grid", "ablations"}),
        "trials": [t.to_json() for t in prep.trials],
    }


def _parent(prep: Prepared, tracker: Tracker, previous: dict) -> str:
    """The study's MLflow parent run: reopened, or (new study, lost or new store) created,
    with the children of trials already recorded rebuilt from their records."""
    paths, study = prep.paths, prep.study
    if prep.resuming:
        parent_id = previous.get("parent_run_id")
        if parent_id and previous.get("tracking_uri") == prep.tracking_uri and recovery.has_run(tracker, parent_id):
            tracker.reopen_parent(parent_id)
            closed = tracker.close_orphans(parent_id)
            mended = recovery.settle_children(tracker, parent_id, study.name, load_records(paths, live=False))
            if closed or mended:
                print(f"closed {closed} MLflow child run(s) left RUNNING by an interrupted driver"
                      + (f"; {mended} of trials that had ended now say how they ended" if mended else ""))
            return parent_id
    paths.sweep_file.write_text(yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False))
    parent_id = tracker.start_parent(
        study.name, paths.sweep_file,
        tags={"ablab.version": __version__, "git.commit": git_commit(), "ablab.trials": str(len(prep.trials))},
    )
    if prep.resuming:
        rebuilt = recovery.rebuild_children(tracker, parent_id, study.name, load_records(paths, live=False))
        print(f"the study's MLflow runs were not found in {mask_uri(prep.tracking_uri)}: "
              f"rebuilt the parent and {rebuilt} child run(s) from the trial records")
    return parent_id


def run(prep: Prepared, address: str | None = None, live: bool | None = None, command: str = "ablab run",
        announce=None) -> str:
    """Run (or continue) the study; returns the final status: finished | failed | interrupted
    (failed: every trial ended, some with an error). `announce(verb)` is called once the
    checks passed and the lock is held, just before anything is written."""
    if not address and "ray" not in sys.modules:
        # A local study binds Ray (GCS, raylet, workers) to 127.0.0.1: a single machine has
        # no reason to be reachable from the network. Ray reads this when it is imported,
        # and then takes the loopback address as the node's address.
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")
    # Set before Ray starts: a local Ray's workers inherit them (see ray_api).
    from ablab.ray_api import is_local_head, trial_environment

    for key, value in trial_environment().items():
        os.environ.setdefault(key, value)
    # Under `ray job submit --working-dir`, the driver's folder is the job's unpacked
    # working_dir, which Ray replaces with a fresh copy when the job's workers start on this
    # node: the driver is left in a deleted folder. The sweep file's path is resolved before
    # Ray starts, and the driver re-enters its folder by name before Tune runs.
    prep = dataclasses.replace(prep, file=str(Path(prep.file).resolve()), launch_dir=os.getcwd(),
                               launch_inode=os.stat(os.getcwd()).st_ino)
    own_ray = check_before_start(prep, address)
    lock = lock_mod.acquire(prep.paths, command)
    if not prep.resuming and prep.paths.study_file.exists():
        # another run created the study between our checks and the lock
        if read_study_file(prep.paths).get("fingerprint") != fingerprint(prep.study, prep.trials):
            lock.release()
            raise UserError(f"a different study named {prep.study.name!r} was just created in {prep.paths.dir}",
                            file=prep.file, key="name")
        prep = dataclasses.replace(prep, resuming=True)
    if announce is not None:
        announce("continuing" if prep.resuming else "starting")
    try:
        # a Ray started here, from this environment: its workers have the trials' variables
        return _run_locked(prep, live, local_ray=own_ray and is_local_head())
    finally:
        lock.release()
        if own_ray:
            _shut_down_ray()


@dataclass(frozen=True)
class Tracking:
    """The study's MLflow side once it is open: its tracker and parent run."""

    tracker: Tracker
    parent_id: str


def _open_tracking(prep: Prepared, previous: dict) -> Tracking:
    """MLflow's store and the study's parent run (created, or reopened with its children
    mended), then the study record with the parent's id. Run by the study's Mirror, on its
    thread, once the first trials have started (ablab/mirror.py says why)."""
    tracker = _tracker(prep)
    mark("mlflow store open")
    parent_id = _parent(prep, tracker, previous)
    write_json_atomic(prep.paths.study_file, _study_record(prep, parent_id, previous.get("created")))
    mark("parent run and study record")
    return Tracking(tracker, parent_id)


def _after_the_first_wave(prep: Prepared, previous: dict) -> Tracking:
    """What the driver does once the first trials have started rather than before: open
    MLflow, and start the processes that will draw the report's figures."""
    from ablab.figures import prestart

    prestart()
    return _open_tracking(prep, previous)


def _run_locked(prep: Prepared, live: bool | None, local_ray: bool = False) -> str:
    from ablab.mirror import Mirror

    paths = prep.paths
    previous = read_study_file(paths) if prep.resuming else {}
    # The record is on disk before any trial starts (what makes the folder a study that
    # `--resume` continues); the mirror rewrites it with the parent run's id.
    write_json_atomic(paths.study_file, _study_record(prep, previous.get("parent_run_id"), previous.get("created")))
    mirror: Mirror[Tracking] = Mirror(lambda: _after_the_first_wave(prep, previous))
    if prep.report_changes:
        print(f"changed since the last run: {', '.join(prep.report_changes)} (the report only): "
              "no trial runs again for it")

    records = {r.spec.key: r for r in load_records(paths, live=False)}
    todo = [t for t in prep.trials if records[t.key].state not in ENDED]
    status = "finished"
    try:
        if todo:
            status = _fit(prep, mirror, todo, live, local_ray)
    finally:
        done = mirror.close()  # every MLflow call made; raises the first that failed
    mark("trials ended")
    from ablab.analysis import planned, select

    final = planned(prep.study, load_records(paths, live=False), paths)
    if status != "interrupted":
        if not all(r.state.is_done for r in final):
            status = "interrupted"
        elif any(r.state == TrialState.FAILED for r in final):
            status = "failed"
    # children of trials cut short by Ctrl-C are closed as KILLED; a resumed trial reopens its own
    done.tracker.close_orphans(done.parent_id)
    done.tracker.tag_selected(done.parent_id, select(prep.study, [r for r in final if r.state.is_done]))
    done.tracker.end_parent(done.parent_id, "KILLED" if status == "interrupted" else "FINISHED")
    mark("mlflow runs closed")
    return status


def _fit(prep: Prepared, mirror, todo: list[TrialSpec], live: bool | None,
         local_ray: bool) -> str:
    from ablab import trial as trial_api
    from ablab.callbacks import StudyCallback
    from ablab.progress import ProgressCallback
    from ablab.ray_api import (
        CheckpointConfig,
        CSVLoggerCallback,
        FailureConfig,
        JsonLoggerCallback,
        RunConfig,
        actors_inherit_the_environment,
        no_callback_census,
        TuneConfig,
        Tuner,
        tune,
    )
    from ablab.schedulers import make_scheduler
    from ablab.seeds import AdaptiveSeeds

    study, paths = prep.study, prep.paths
    storage = str(paths.storage.resolve())
    study_dir = str(paths.dir.resolve())
    study_callback = StudyCallback(storage, study.name, first_wave=_first_wave(study, len(todo)))
    study_callback.attach(mirror)
    callbacks = [
        study_callback,
        ProgressCallback(study.name, study.metric, study.mode, len(prep.trials), live=live, storage=storage),
        # Ray Tune's own logs in each trial folder (progress.csv, result.json), as by default;
        # its default TensorBoard logger is left out: it imports torch into the driver (seconds
        # before the first trial starts) for event files nothing reads.
        CSVLoggerCallback(),
        JsonLoggerCallback(),
    ]
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    logs = _logs_by_key(paths)
    records = {r.spec.key: r for r in load_records(paths, live=False)}
    trainable = tune.with_resources(trial_api.run, {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    # Adaptive seeds: a Searcher suggests the trials round by round (it sees every trial,
    # and skips those that ended in an earlier run); otherwise one grid of what is left.
    searcher_on = bool(study.adaptive_seeds)
    entries = [
        {"trainable": study.trainable, "stage_root": str(paths.stages_dir.resolve()), "study_dir": study_dir,
         "resume_from": _last_checkpoint(paths, logs.get(t.key, []), max(records[t.key].steps, default=None)),
         **t.to_json()} for t in (prep.trials if searcher_on else todo)
    ]
    searcher = AdaptiveSeeds(study.model_dump(mode="json"), entries, storage) if searcher_on else None
    param_space = {} if searcher else {"ablab": tune.grid_search(entries)}
    # Ray's own console output is replaced by ablab.progress; its warning about frequent
    # experiment snapshots fires on every short trial that checkpoints each step.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    paths.tune_dir.mkdir(parents=True, exist_ok=True)
    run_name = f"run-{len(list(paths.tune_dir.glob('run-*'))) + 1}"
    tuner = Tuner(
        trainable,
        param_space=param_space,
        tune_config=TuneConfig(
            scheduler=make_scheduler(study, study_dir),
            search_alg=searcher,
            # the grid holds the seeds; a searcher ends the study itself (headroom: a trial
            # lost with a killed driver is asked for again and counts twice)
            num_samples=2 * len(entries) if searcher else 1,
            reuse_actors=True,  # torch is imported once per worker, not once per trial
            max_concurrent_trials=study.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            trial_name_creator=_trial_dirname,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(paths.tune_dir.resolve()),  # pyarrow reads a relative path as a bad URI
            failure_config=FailureConfig(max_failures=study.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=study.checkpoint.num_to_keep),
            callbacks=callbacks,
            verbose=0,
        ),
    )
    if prep.launch_dir:
        _reenter(prep.launch_dir, prep.launch_inode)
    mark("tuner built")
    try:
        with no_callback_census(), actors_inherit_the_environment() if local_ray else contextlib.nullcontext():
            tuner.fit()
    except KeyboardInterrupt:
        return "interrupted"
    return "finished"


RAY_JOB_WORKING_DIR = "/runtime_resources/working_dir_files/"  # where a Ray job's working_dir is unpacked
REPLACED_WITHIN_S = 30


def _reenter(folder: str, inode: int) -> None:
    """The driver back in the folder it was started in, by name. In a Ray job's unpacked
    working_dir, Ray deletes the folder and unpacks it again once the job's workers
    start on this node (see `run`), which takes a moment after Ray is joined: the driver
    waits for the new copy (another inode) before entering it, for at most
    REPLACED_WITHIN_S; anywhere else it enters the folder at once."""
    if RAY_JOB_WORKING_DIR in folder:
        deadline = time.time() + REPLACED_WITHIN_S
        while time.time() < deadline:
            try:
                if os.stat(folder).st_ino != inode:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.1)
    os.chdir(folder)


def _first_wave(study: Study, trials: int) -> int:
    """How many trials start at once: the cluster's CPUs (or GPUs) over a trial's share,
    capped by max_concurrent and the number of trials."""
    from ablab.ray_api import ray

    total = ray.cluster_resources()
    fits = [int(total.get(res, 0) // need) for res, need in (("CPU", study.resources.cpu), ("GPU", study.resources.gpu))
            if need]
    return max(1, min([trials, study.max_concurrent or trials, *fits]))


def _logs_by_key(paths: StudyPaths) -> dict[str, list[str]]:
    """Trial key -> the ids of every run of it so far (their folders hold its checkpoints)."""
    from ablab.records import fold_log

    out: dict[str, list[str]] = {}
    for log in sorted(paths.trials_dir.glob("*.jsonl")) if paths.trials_dir.exists() else []:
        rec = fold_log(log)
        if rec is not None:
            out.setdefault(rec.spec.key, []).append(rec.trial_id)
    return out
