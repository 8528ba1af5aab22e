"""Run a study: validate everything, then Tuner.fit (or Tuner.restore to continue).

Order matters: every check a user can fail (the sweep file, every trial config, the
results folder, the tracking server, resources against the cluster) runs before the
first trial starts.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from ablab import __version__
from ablab.analysis import planned, select
from ablab.errors import UserError
from ablab.expand import TrialSpec, expand, fingerprint
from ablab.records import StudyPaths, TrialState, load_records, read_study_file, write_json_atomic
from ablab.spec import Study, load_study
from ablab.tracking import Tracker, git_commit, resolve_uri

CONFIRM_ABOVE = 1000  # trials; larger grids need --yes


@dataclass(frozen=True)
class Prepared:
    """A validated study, ready to run."""

    study: Study
    trials: list[TrialSpec]
    paths: StudyPaths
    file: str
    resuming: bool
    tracking_uri: str


def prepare(file: str, overrides=(), resume: bool = False, yes: bool = False) -> Prepared:
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
    if exists:
        previous = read_study_file(paths)
        if previous["fingerprint"] != fingerprint(study, trials):
            raise UserError(
                f"a different study named {study.name!r} already exists in {paths.dir}", file=file, key="name",
                hint="the sweep file (or --set) changed since it ran: give the study a new name, "
                f"or delete {paths.dir} to start over",
            )
    uri = resolve_uri(study.tracking.uri, paths.default_tracking_uri)
    return Prepared(study, trials, paths, file, exists, uri)


def _check_writable(paths: StudyPaths, file: str) -> None:
    try:
        paths.dir.mkdir(parents=True, exist_ok=True)
        probe = paths.dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"cannot write the results folder {paths.dir} ({exc.strerror or exc})", file=file, key="storage",
        ) from None


def init_ray(address: str | None, study: Study) -> None:
    from ablab.ray_api import ray

    if not ray.is_initialized():
        kwargs = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    total = ray.cluster_resources()
    for res, need in (("CPU", study.resources.cpu), ("GPU", study.resources.gpu)):
        if need and total.get(res, 0) < need:
            raise UserError(
                f"each trial asks for {need} {res} but the cluster has {total.get(res, 0):g}",
                key=f"resources.{res.lower()}", value=need,
                allowed=f"at most {total.get(res, 0):g}",
            )


def _trial_dirname(trial) -> str:
    return trial.trial_id


def run(prep: Prepared, address: str | None = None, live: bool | None = None) -> str:
    """Run (or continue) the study; returns the final status: finished | failed | interrupted
    (failed: every trial ended, some with an error)."""
    from ablab import trial as trial_api
    from ablab.callbacks import StudyCallback
    from ablab.progress import ProgressCallback
    from ablab.ray_api import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner, tune
    from ablab.schedulers import make_scheduler
    from ablab.seeds import AdaptiveSeeds

    study, paths = prep.study, prep.paths
    # With the SQLite default, artifacts sit beside it in the study folder; a tracking
    # server keeps its own artifact store.
    local_store = not prep.tracking_uri.startswith(("http://", "https://"))
    artifacts = paths.mlflow_artifacts.resolve().as_uri() if local_store else None
    tracker = Tracker(prep.tracking_uri, study.tracking.experiment or study.name, artifact_location=artifacts)
    # MLflow's first contact (creating the SQLite schema takes seconds) overlaps Ray's start-up.
    with ThreadPoolExecutor(max_workers=1) as pool:
        tracking_ready = pool.submit(lambda: (tracker.check_reachable(), tracker.experiment_id))
        try:
            init_ray(address, study)
        finally:
            tracking_ready.result()  # a tracking error is raised here, before any trial starts

    storage = str(paths.storage.resolve())
    if prep.resuming:
        record = read_study_file(paths)
        parent_id = record["parent_run_id"]
        tracker.reopen_parent(parent_id)
        closed = tracker.close_orphans(parent_id)
        if closed:
            print(f"closed {closed} MLflow child run(s) left RUNNING by an interrupted driver")
    else:
        paths.sweep_file.write_text(yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False))
        parent_id = tracker.start_parent(
            study.name, paths.sweep_file,
            tags={"ablab.version": __version__, "git.commit": git_commit(), "ablab.trials": str(len(prep.trials))},
        )
        write_json_atomic(paths.study_file, {
            "name": study.name,
            "fingerprint": fingerprint(study, prep.trials),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source_file": str(Path(prep.file).resolve()),
            "tracking_uri": prep.tracking_uri,
            "experiment": tracker.experiment_name,
            "parent_run_id": parent_id,
            "trials": [t.to_json() for t in prep.trials],
        })

    callbacks = [
        StudyCallback(storage, study.name, prep.tracking_uri, tracker.experiment_name, artifacts, parent_id),
        ProgressCallback(study.name, study.metric, study.mode, len(prep.trials), live=live, storage=storage),
    ]
    trainable = tune.with_resources(trial_api.run, {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    stage_root = str(paths.stages_dir.resolve())
    entries = [{"trainable": study.trainable, "stage_root": stage_root, "study_dir": str(paths.dir.resolve()),
                **t.to_json()} for t in prep.trials]
    # Adaptive seeds: a Searcher suggests the trials round by round; otherwise one grid.
    searcher = AdaptiveSeeds(study.model_dump(mode="json"), entries, storage) if study.adaptive_seeds else None
    param_space = {} if searcher else {"ablab": tune.grid_search(entries)}
    # Ray's own console output is replaced by ablab.progress; its warning about frequent
    # experiment snapshots fires on every short trial that checkpoints each step.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Trials keep the working directory ablab was started in (Ray's default moves them into
    # their trial folder), so relative paths in sweep files (data files, model folders) mean
    # what they mean on the command line; Tune passes this variable on to every trial.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    tune_dir = str(paths.tune_dir.resolve())  # pyarrow reads a relative path as a bad URI
    if prep.resuming and Tuner.can_restore(tune_dir):
        tuner = Tuner.restore(tune_dir, trainable=trainable, resume_errored=True, param_space=param_space)
        # Ray brings back the pickled callbacks; use this run's (the tracking URI may have moved).
        tuner._local_tuner._run_config.callbacks = callbacks  # noqa: SLF001 - no public setter
    else:
        tuner = Tuner(
            trainable,
            param_space=param_space,
            tune_config=TuneConfig(
                scheduler=make_scheduler(study),
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
                name=paths.tune_dir.name,
                storage_path=str(paths.dir.resolve()),
                failure_config=FailureConfig(max_failures=study.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=study.checkpoint.num_to_keep),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    status = "finished"
    try:
        tuner.fit()
    except KeyboardInterrupt:
        status = "interrupted"
    records = planned(study, load_records(paths), paths)
    if not all(r.state.is_done for r in records):
        status = "interrupted"
    elif any(r.state == TrialState.FAILED for r in records):
        status = "failed"
    # children of trials cut short by Ctrl-C are closed as KILLED; a resumed trial reopens its own
    tracker.close_orphans(parent_id)
    tracker.tag_selected(parent_id, select(study, [r for r in records if r.state.is_done]))
    tracker.end_parent(parent_id, "KILLED" if status == "interrupted" else "FINISHED")
    return status
