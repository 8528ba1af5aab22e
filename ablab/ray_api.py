"""The one place ablab imports Ray.

Ray's public API moved several times (ray.air -> ray.train -> ray.tune); every other
module takes what it needs from here, so the next move is a one-file change.
"""

import contextlib
import os

import ray
from ray import tune
from ray.tune import (
    Callback,
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    TuneConfig,
    Tuner,
)
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.search import Searcher
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

__all__ = [
    "actors_inherit_the_environment",
    "no_callback_census",
    "ray",
    "tune",
    "Callback",
    "Checkpoint",
    "CheckpointConfig",
    "FailureConfig",
    "RunConfig",
    "TuneConfig",
    "Tuner",
    "CSVLoggerCallback",
    "JsonLoggerCallback",
    "ASHAScheduler",
    "FIFOScheduler",
    "MedianStoppingRule",
    "TrialScheduler",
    "Searcher",
]


@contextlib.contextmanager
def actors_inherit_the_environment():
    """Within it, Ray Tune starts trial actors without a runtime env of their own.

    Tune gives every trial actor a runtime env: the driver's values of a few variables
    (RAY_CHDIR_TO_TRIAL_DIR, cloud credentials...) and PL_DISABLE_FORK=1. Ray cannot run an
    actor that has a runtime env in the worker processes it prestarts (one per CPU), so each
    trial actor waits for a new Python process (1-2 s before the first trial, on 2 cores)
    while the prestarted ones idle. For a Ray that ablab started itself from this process,
    every one of those variables is already in each worker's environment (the raylet
    inherits it), so the runtime env adds nothing. Ray Tune has no option for it: its two
    module-level tables are emptied for the fit, and put back. Only for a Ray started here,
    after the variables were set (a joined cluster's workers need them sent). If a Ray
    version renames the tables, nothing is changed and trials start as before."""
    try:
        from ray.tune.execution import class_cache

        defaults, propagated = class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE
    except (ImportError, AttributeError):
        yield
        return
    if any(os.environ.get(k) != v for k, v in defaults.items()):  # not in the workers' environment
        yield
        return
    class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = {}, set()
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = defaults, propagated


def trial_environment() -> dict[str, str]:
    """What the trials' environment must hold, set in the driver before Ray starts (a local
    Ray's workers inherit it) and sent by Ray Tune to a joined cluster's workers."""
    from ray.tune.execution import class_cache

    return {
        # Trials keep the working directory ablab was started in (Ray's default moves them
        # into their trial folder), so relative paths in sweep files (data files, model
        # folders) mean what they mean on the command line.
        "RAY_CHDIR_TO_TRIAL_DIR": "0",
        **getattr(class_cache, "DEFAULT_ENV_VARS", {}),  # Ray Tune's own (PL_DISABLE_FORK)
    }


@contextlib.contextmanager
def no_callback_census():
    """Within it, Ray Tune does not count the run's callbacks for its usage statistics.

    To count them by class, Ray imports every logger integration it knows (MLflow, W&B,
    Comet, Aim): over a second of imports in the driver before the first trial starts,
    done even when usage statistics are off, and then never sent. ablab turns them off
    (ablab/__init__.py), so it skips the count; if they are on, it is left alone. If a Ray
    version moves the function, nothing is changed."""
    try:
        from ray._common.usage import usage_lib
    except ImportError:
        usage_lib = None
    try:
        from ray.air._internal import usage as air_usage

        tag_callbacks = air_usage.tag_callbacks
    except (ImportError, AttributeError):
        yield
        return
    enabled = getattr(usage_lib, "usage_stats_enabled", lambda: True)
    if enabled():
        yield
        return
    air_usage.tag_callbacks = lambda callbacks: False
    try:
        yield
    finally:
        air_usage.tag_callbacks = tag_callbacks


def starts_a_local_ray() -> bool:
    """Whether `ray.init()` without an address starts a new Ray in this process, rather
    than joining the cluster that RAY_ADDRESS (a `ray job submit` driver) or a `ray start`
    on this machine points to."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(None) is None
    except Exception:  # noqa: BLE001 - unknown: treat it as joining, which changes nothing
        return False


def is_local_head() -> bool:
    """Whether this process started the Ray it is connected to (its head node)."""
    from ray._private import worker

    return bool(getattr(getattr(worker, "_global_node", None), "head", False))


def local_system_config(preload: list[str]) -> dict:
    """Ray's settings for a Ray that a study starts on this machine alone.

    The raylet's client connects to the object store it has just started with Ray's default
    of 1 s between tries: on a quick machine the first try comes a little early and a
    second is lost before every start; here the same 10 s budget goes in 50 ms steps. The
    workers Ray prestarts (one per CPU) import `preload` while the driver is still building
    the Tuner, instead of when the first trial is placed on them; a module that fails to
    import there is only logged, and imported again (with its error) by the trial."""
    config: dict = {"raylet_client_connect_timeout_milliseconds": 50, "raylet_client_num_connect_attempts": 200}
    if preload:
        config["preload_python_modules"] = list(preload)
    return config


@contextlib.contextmanager
def lean_local_start():
    """Within it, `ray.init()` starts a local Ray without the processes a study on one
    machine does not use, and notices sooner that its node is up.

    Left out: the dashboard head (with `include_dashboard=False` Ray still starts it, to
    load only its usage-statistics module, which ablab turns off, and waits until it has
    imported every dashboard module: 1-2 s, on the critical path), the autoscaler monitor
    (a single machine does not scale) and the log monitor (the driver reads no worker
    logs: `log_to_driver=False`); `ray start` can skip the last two as well
    (`--no-monitor`, `--include-log-monitor=False`), `ray.init` has no option for them.
    Ray's state API and job submission need the dashboard head: neither is used on such a
    Ray. Ray waits for its node to register by asking the GCS once a second; here it is
    asked every 20 ms first. Ray's private functions are swapped for the call and put back;
    if a Ray version moves them, nothing is changed and Ray starts as before."""
    try:
        from ray._private import parameter, services, utils

        saved = [(parameter, "RayParams", parameter.RayParams),
                 (services, "start_api_server", services.start_api_server),
                 (services, "get_node", services.get_node),
                 (utils, "get_dashboard_dependency_error", utils.get_dashboard_dependency_error)]
    except (ImportError, AttributeError):
        yield
        return
    base_params, get_node = parameter.RayParams, services.get_node

    class LeanParams(base_params):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("no_monitor", True)
            kwargs.setdefault("include_log_monitor", False)
            super().__init__(*args, **kwargs)

    def get_node_soon(gcs_address, node_id):
        import time

        try:
            client = services.GcsClient(address=gcs_address)
            selector = services.GetAllNodeInfoRequest.NodeSelector(node_id=services.NodeID.from_hex(node_id).binary())
            alive = services.GcsNodeInfo.GcsNodeState.ALIVE
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not client.get_all_node_info(
                    timeout=5, node_selectors=[selector], state_filter=alive):
                time.sleep(0.02)
        except Exception:  # noqa: BLE001 - Ray's own wait below decides
            pass
        return get_node(gcs_address, node_id)

    parameter.RayParams = LeanParams
    services.start_api_server = lambda *args, **kwargs: ("", None)  # what Ray returns for no dashboard
    services.get_node = get_node_soon
    utils.get_dashboard_dependency_error = lambda: None  # its check imports aiohttp & co (0.3 s); unused here
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
