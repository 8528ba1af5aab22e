"""MLflow tracking from the driver: one parent run per study, one child run per trial.

Ray's MLflowLoggerCallback makes no parent run, logs Ray's flattened config (not the
sweep file's dotted names) and cannot find its runs again after a restart, so a resumed
study would duplicate children. This tracker finds a trial's child by the tag
`ablab.trial_key`, so a restarted driver continues the same child; logging happens in
the driver only, which keeps SQLite's single writer happy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ablab.errors import UserError

T = TypeVar("T")

TAG_STUDY = "ablab.study"
TAG_KEY = "ablab.trial_key"
TAG_STATE = "ablab.state"
TAG_SELECTED = "ablab.selected"  # true: the trial enters the ablation table (tuned value chosen)
TAG_VARIANT = "ablab.variant"
TAG_CONTEXT = "ablab.context"  # the grid point's label
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"  # the run's description, rendered as markdown by the UI
MAX_PARAM_LEN = 6000
MAX_TAG_LEN = 8000  # MLflow's limit on a tag value
# Without this tag the MLflow 3 UI opens an experiment in its GenAI view (traces, tokens);
# "custom_model_development" is the UI's own name for classic model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML = "custom_model_development"
# The UI restores a saved runs view from the experiment tag `mlflow.sharedViewState.<key>`
# when the URL carries `viewStateShareKey=<key>` (what its "Share" button does).
SHARED_VIEW_TAG = "mlflow.sharedViewState."
NOT_SELECTED = " (not selected)"
RUN_NAME_COLUMN = "attributes.`Run Name`"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `ablab ui` serves by default


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {dotted.key: value}, the same names as in the sweep file."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_uri(configured: str | None, default: str) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default


def _retry(fn: Callable[[], T], attempts: int = 5, first_wait: float = 1.0) -> T:
    """MLflow calls retried with backoff: a server restart should not lose a metric."""
    wait = first_wait
    for i in range(attempts):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - the MLflow client raises many kinds
            if i == attempts - 1:
                raise
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


# ------------------------------------------------------------------- a new SQLite store
#
# MLflow creates a new SQLite store by running its alembic migrations, one by one, which
# takes seconds (most of ablab's start-up). The schema they build depends only on the
# versions of MLflow, its migration tools and SQLite, so it is built once per set of
# versions into ablab's cache, and a new store starts as a copy of it. The copy is
# exactly what MLflow's `_initialize_tables` leaves (no row added): MLflow opens it as
# any store, checks its schema version against its own head revision, and adds its
# Default experiment itself, with the new store's artifact root.

SCHEMA_CACHE_ENV = "ABLAB_CACHE"  # ablab's cache folder (default: $XDG_CACHE_HOME/ablab)


def cache_dir() -> Path:
    configured = os.environ.get(SCHEMA_CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ablab"


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///path` URI; None for anything else (a server, in-memory, options)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or "?" in uri or len(uri) == len(prefix):
        return None
    return Path(uri[len(prefix):])


def schema_template() -> Path:
    """The empty MLflow SQLite store of the installed versions, built on first use."""
    import sqlite3
    from importlib.metadata import version

    key = "-".join([f"mlflow{version('mlflow')}", f"alembic{version('alembic')}",
                    f"sqlalchemy{version('sqlalchemy')}", f"sqlite{sqlite3.sqlite_version}"])
    template = cache_dir() / "mlflow-schema" / f"{key}.db"
    if not template.exists():
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables

        template.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=template.parent, prefix=".building-", suffix=".db")
        os.close(fd)
        os.unlink(tmp)  # SQLite creates it
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(tmp, template)  # another driver building the same one at once is harmless
    return template


def prepare_store(uri: str) -> bool:
    """A SQLite store that does not exist yet starts as a copy of the schema template.
    Returns whether it was copied; on any problem with the cache MLflow builds the store
    itself, as it would without ablab."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return False
    try:
        template = schema_template()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        shutil.copyfile(template, tmp)
        os.replace(tmp, path)
        return True
    except Exception:  # noqa: BLE001 - a cache is an optimisation: MLflow migrates instead
        return False


class Tracker:
    """The study's MLflow experiment, parent run and children."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None):
        from mlflow.tracking import MlflowClient

        prepare_store(uri)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_name = experiment
        self.artifact_location = artifact_location
        self._experiment_id: str | None = None
        self._children: dict[str, str] = {}

    # --------------------------------------------------------------- set-up
    def check_reachable(self) -> None:
        """Refuse to start a study whose tracking server is down: fail before any trial runs."""
        if not self.uri.startswith(("http://", "https://")):
            return
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001
            raise UserError(
                f"the MLflow tracking server at {self.uri} is unreachable ({type(exc).__name__})",
                key="tracking.uri",
                hint="start it, or unset MLFLOW_TRACKING_URI / tracking.uri to use SQLite in the study folder",
            ) from None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                self._experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location,
                    tags={EXPERIMENT_KIND_TAG: CLASSIC_ML},
                )
            else:
                self._experiment_id = exp.experiment_id
                if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older ablab, or by hand
                    self.client.set_experiment_tag(self._experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_ML)
        return self._experiment_id

    def start_parent(self, study_name: str, sweep_file: Path, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=study_name,
            tags={TAG_STUDY: study_name, "ablab.role": "study", **tags},
        )
        self.client.log_artifact(run.info.run_id, str(sweep_file))
        return run.info.run_id

    def reopen_parent(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def close_orphans(self, parent_id: str) -> int:
        """Children left RUNNING by a killed driver are closed as KILLED; a trial that
        runs again reopens its own child. Returns how many were closed."""
        closed = 0
        for run in self._search(f"tags.`{PARENT_TAG}` = '{parent_id}' and attributes.status = 'RUNNING'"):
            self.client.set_tag(run.info.run_id, TAG_STATE, "killed")
            self.client.set_terminated(run.info.run_id, status="KILLED")
            closed += 1
        return closed

    def _search(self, filter_string: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def children(self, parent_id: str) -> list:
        return self._search(f"tags.`{PARENT_TAG}` = '{parent_id}'")

    # --------------------------------------------------------------- per trial
    def child(self, parent_id: str, study_name: str, spec: Mapping[str, Any]) -> str:
        """The trial's child run, created once and found again after a restart."""
        key = spec["key"]
        if key in self._children:
            run_id = self._children[key]
            _retry(lambda: self.client.update_run(run_id, status="RUNNING"))
            return run_id
        found = _retry(lambda: self._search(
            f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TAG_KEY}` = '{_quote(key)}'"
        ))
        if found:
            run_id = found[0].info.run_id
            _retry(lambda: self.client.update_run(run_id, status="RUNNING"))
        else:
            run = _retry(lambda: self.client.create_run(
                self.experiment_id,
                run_name=run_name(spec),
                tags={
                    PARENT_TAG: parent_id, TAG_STUDY: study_name, TAG_KEY: key,
                    TAG_VARIANT: spec["variant"], "ablab.seed": str(spec["seed"]),
                    TAG_CONTEXT: str(spec.get("context_label", "")), TAG_STATE: "running",
                },
            ))
            run_id = run.info.run_id
            self._log_params(run_id, spec)
        self._children[key] = run_id
        return run_id

    def _log_params(self, run_id: str, spec: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = flatten(spec["config"])
        params["variant"] = spec["variant"]
        items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            _retry(lambda chunk=items[i:i + 100]: self.client.log_batch(run_id, params=chunk))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            _retry(lambda chunk=batch[i:i + 1000]: self.client.log_batch(run_id, metrics=chunk))

    def end_child(self, run_id: str, spec: Mapping[str, Any], state: str, error: str | None = None,
                  last_step: int | None = None) -> None:
        # A trial stopped early by the scheduler ran as intended and ended cleanly, so its
        # status stays FINISHED (KILLED means "interrupted", what a Ctrl-C leaves). What tells
        # it apart is its name: the name column is always shown, pinned, searchable
        # (attributes.run_name LIKE '%stopped%') and is the legend of every chart.
        status = {"finished": "FINISHED", "stopped": "FINISHED", "failed": "FAILED"}.get(state, "KILLED")
        tags = {TAG_STATE: state}
        if error:
            tags["ablab.error"] = error[-4000:]
        for k, v in tags.items():
            _retry(lambda k=k, v=v: self.client.set_tag(run_id, k, v))
        _retry(lambda: self.client.update_run(run_id, status=status, name=run_name(spec, state, last_step)))
        _retry(lambda: self.client.set_terminated(run_id, status=status))

    def tag_selected(self, parent_id: str, selected: Mapping[str, bool]) -> None:
        """`ablab.selected=true|false` on each child whose trial key is in `selected`; a child
        not selected also says so in its name, where the runs list shows it."""
        for run in self.children(parent_id):
            key = run.data.tags.get(TAG_KEY)
            value = None if key not in selected else ("true" if selected[key] else "false")
            if value is not None and run.data.tags.get(TAG_SELECTED) != value:
                _retry(lambda r=run.info.run_id, v=value: self.client.set_tag(r, TAG_SELECTED, v))
            name = run.info.run_name or ""
            if value == "false" and not name.endswith(NOT_SELECTED):
                _retry(lambda r=run.info.run_id, n=name: self.client.update_run(r, name=n + NOT_SELECTED))

    # --------------------------------------------------------------- the study
    def save_view(self, parent_id: str, view: Mapping[str, Any]) -> None:
        _retry(lambda: self.client.set_experiment_tag(
            self.experiment_id, SHARED_VIEW_TAG + view_key(parent_id), json.dumps(view)[:MAX_TAG_LEN]))

    def publish(self, parent_id: str, description: str, params: Mapping[str, Any], tags: Mapping[str, str],
                artifacts: Path | None, view: Mapping[str, Any]) -> None:
        """The parent run becomes the study: its description, settings, tags and report,
        and the experiment's saved runs view (see `runs_view`)."""
        from mlflow.entities import Param, RunTag

        existing = self.client.get_run(parent_id).data.params
        # Params are write-once in MLflow: a study published again keeps its first values.
        new = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(params.items()) if k not in existing]
        run_tags = [RunTag(NOTE_TAG, description[:MAX_TAG_LEN])] + [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, max(len(new), 1), 100):
            _retry(lambda chunk=new[i:i + 100]: self.client.log_batch(parent_id, params=chunk, tags=run_tags if i == 0 else []))
        if artifacts is not None:
            _retry(lambda: self.client.log_artifacts(parent_id, str(artifacts), artifact_path="report"))
        self.save_view(parent_id, view)

    def end_parent(self, run_id: str, status: str) -> None:
        _retry(lambda: self.client.set_terminated(run_id, status=status))


def run_name(spec: Mapping[str, Any], state: str | None = None, last_step: int | None = None,
             selected: bool | None = None) -> str:
    """`variant | seed=N` (the grid point first when there is a grid: `context_label`, as
    ablab.expand writes it), and why the trial is not in the means when it is not: stopped
    early, failed, or a tuned value not selected."""
    label = spec.get("context_label") or "all"
    tuned = ", ".join(f"{k}={v}" for k, v in (spec.get("tune") or {}).items())  # a tuned value tried
    parts = ([label] if label != "all" else []) + [spec["variant"]] + ([tuned] if tuned else []) + [f"seed={spec['seed']}"]
    name = " | ".join(parts)
    if state == "stopped":
        name += " (stopped" + (f" at step {last_step})" if last_step is not None else ")")
    elif state == "failed":
        name += " (failed)"
    elif selected is False:
        name += NOT_SELECTED
    return name


def runs_view(parent_id: str, columns: list[str], group_by_tags: tuple[str, ...] = (TAG_VARIANT,)) -> dict[str, Any]:
    """A runs view for the MLflow 3 UI: the study's children, grouped by arm (a mean curve
    with a band per arm in the charts), the given columns shown, every run in the charts.

    The fields are those of the UI's own saved view state: the URL keys (searchFilter,
    orderByKey, orderByAsc) and the view keys (selectedColumns, groupBy, runsHiddenMode...).
    Column names are canonical keys: params.`model.width`, metrics.`val/acc`, tags.`x`.
    """
    return {
        "searchFilter": f"tags.`{PARENT_TAG}` = '{parent_id}'",
        "orderByKey": "attributes.start_time",  # grid order: the baseline first
        "orderByAsc": True,
        "selectedColumns": columns,
        # the run name column wide enough for "variant | seed=N (stopped at step S)"; the
        # UI applies widths only together with an order, so the order lists every column
        "columnOrder": [RUN_NAME_COLUMN, "runDateAndNestInfo", "duration", *columns],
        "columnWidths": {RUN_NAME_COLUMN: 320},
        "groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "tag", "groupByData": tag} for tag in group_by_tags]},
        "runsHiddenMode": "SHOW_ALL",
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
    }


def ablated_params(study) -> list[str]:
    """The config keys the arms and the grid change: the columns worth comparing."""
    keys: dict[str, None] = {}
    for a in study.ablations:
        for v in [a.baseline, *a.replacements]:
            keys.update(dict.fromkeys(v if isinstance(v, dict) else [a.part]))
    keys.update(dict.fromkeys(study.grid))
    return list(keys)


def arms_view(study, parent_id: str) -> dict[str, Any]:
    """The study's runs view: ablated params, the report's metrics and the trial state as columns."""
    metrics = list(dict.fromkeys([*study.report_metrics, study.metric]))
    columns = ([f"params.`{p}`" for p in ablated_params(study)] + [f"metrics.`{m}`" for m in metrics]
               + [f"tags.`{TAG_STATE}`"])
    # an arm is a variant at a grid point: grouped by both when the study has both
    groups = ((TAG_CONTEXT,) if study.grid else ()) + ((TAG_VARIANT,) if study.ablations else ())
    return runs_view(parent_id, columns, groups or (TAG_VARIANT,))


def view_key(parent_id: str) -> str:
    """One saved view per study: several studies may share an experiment."""
    return f"ablab-{parent_id}"


def runs_url(base: str, experiment_id: str, parent_id: str, search: str | None = None) -> str:
    """The experiment's runs page: the study's saved arms view, or the runs matching `search`."""
    from urllib.parse import urlencode

    query = {"searchFilter": search} if search else {"viewStateShareKey": view_key(parent_id)}
    # the UI's own switch between its GenAI and its model-training pages
    query["workflowType"] = "machine_learning"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
