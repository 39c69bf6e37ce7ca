"""MLflow wiring shared by every stage.

One MLflow experiment per pipeline (``project.name`` in params.yaml), one run per stage execution, tagged with the
stage name and the git / DVC revision; params come from the stage's config dataclass, metrics per step where a
stage has steps, artifacts (configs, statistics, plots, videos, models) from its outputs.

The tracking URI defaults to a SQLite store at the repository root (``sqlite:///mlflow.db``, which
``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows) and follows ``MLFLOW_TRACKING_URI`` when set.
Artifacts of that default store go to ``mlartifacts/`` beside it. The root is ``DVC_ROOT`` when DVC runs the stage:
``dvc exp run --temp`` and ``--queue`` run in a throwaway copy but point ``DVC_ROOT`` at the user's repository, so
their runs land in the same store as ``dvc repro``'s instead of vanishing with the copy. Outside DVC it is the
working directory. Set ``OPENVLA_TRACKING=off`` to run a stage without MLflow
(for example on a cluster node without a writable store); the stage's ``metrics/*.json`` are still written.

Runs of processes that died (SIGKILL, OOM killer, power loss) cannot end themselves and would stay ``RUNNING``
forever. Every run is therefore tagged with the host, pid, process start time and boot id of the process that owns
it, and each new stage run first marks ``KILLED`` the experiment's ``RUNNING`` runs whose owner is gone (same host,
and no such process any more; runs of other hosts are left alone, since their liveness cannot be seen from here).
A training stage that resumes from a checkpoint continues the MLflow run that wrote the checkpoint
(``StageRun.continue_run``), so a run killed and resumed any number of times is one run with one loss curve.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from openvla.config import to_flat_dict
from openvla.io import atomic_write_json

log = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def store_root() -> Path:
    """Where the default store lives: the DVC repository of the run (``DVC_ROOT``), else the working directory."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` or ``mlflow.db`` in ``store_root()``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / DEFAULT_DB}"


def tracking_enabled() -> bool:
    return os.environ.get("OPENVLA_TRACKING", "on").lower() not in {"off", "0", "false", "no"}


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def revision_tags() -> dict[str, str]:
    """Git commit, dirty flag and the DVC experiment (when run by ``dvc exp run``) of the current run."""
    tags = {
        "git.commit": _git("rev-parse", "HEAD") or "unknown",
        "git.dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
    }
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep numeric, finite metric values (MLflow rejects NaN in some stores; booleans become 0/1)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float) and math.isfinite(float(value)):
            out[key.replace("/", ".")] = float(value)
    return out


# ------------------------------------------------------------------------------------------------------------
# Who owns a run, and is it still alive?
# ------------------------------------------------------------------------------------------------------------
OWNER_TAGS = ("openvla.host", "openvla.pid", "openvla.pid_start", "openvla.boot_id")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ("" when unknown or no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the "(comm)" field


def owner_tags() -> dict[str, str]:
    """Tags naming this process as a run's owner."""
    pid = os.getpid()
    return {"openvla.host": socket.gethostname(), "openvla.pid": str(pid), "openvla.pid_start": _process_start(pid),
            "openvla.boot_id": _boot_id()}  # fmt: skip


def owner_is_dead(tags: Mapping[str, str]) -> bool | None:
    """True when the process that owns a run (its ``owner_tags``) has ended; None when that cannot be told here
    (another host, or a run without owner tags)."""
    if tags.get("openvla.host") != socket.gethostname() or not tags.get("openvla.pid", "").isdigit():
        return None
    if tags.get("openvla.boot_id") and _boot_id() and tags["openvla.boot_id"] != _boot_id():
        return True  # the machine rebooted since
    pid = int(tags["openvla.pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    started = tags.get("openvla.pid_start", "")
    return bool(started) and _process_start(pid) not in ("", started)  # the pid was reused by a newer process


def mark_dead_runs(client: Any, experiment_id: str) -> list[str]:
    """End as KILLED the experiment's RUNNING runs whose owner process is gone; returns their ids."""
    from mlflow.entities import RunStatus

    marked = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if run.info.run_id and owner_is_dead(run.data.tags) is True:
            client.set_tag(run.info.run_id, "openvla.ended_by", "its process died; marked KILLED by the next run")
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            marked.append(run.info.run_id)
            log.warning("MLflow run %s (%s) was left RUNNING by a process that died: marked KILLED",
                        run.info.run_id, run.data.tags.get("stage", "?"))  # fmt: skip
    return marked


class StageRun:
    """Handle to one stage's MLflow run; every method is a no-op when tracking is off."""

    def __init__(self, mlflow_module: Any | None) -> None:
        self._mlflow = mlflow_module
        self._params: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    @property
    def run_id(self) -> str | None:
        if self._mlflow is None:
            return None
        run = self._mlflow.active_run()
        return run.info.run_id if run else None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._mlflow is not None and params:
            values = {k: str(v)[:6000] for k, v in params.items()}
            self._mlflow.log_params(values)
            self._params.update(values)

    def continue_run(self, run_id: str | None, step: int = 0) -> bool:
        """Make this stage execution continue the earlier run ``run_id`` (a resumed training run): the run opened
        for this execution is deleted, ``run_id`` becomes the active run again (RUNNING, then FINISHED/FAILED as
        usual) and gets this execution's params; one whose value changed (e.g. a longer ``steps``) is kept as
        the tag ``resume.<step>.<param>``, since MLflow params cannot change. Returns False (and changes nothing)
        when tracking is off, ``run_id`` is this run, or it is not a live run of the same experiment."""
        if self._mlflow is None or not run_id or run_id == self.run_id:
            return False
        mlflow = self._mlflow
        client = mlflow.MlflowClient()
        current = mlflow.active_run()
        try:
            previous = client.get_run(run_id)
        except Exception as err:  # deleted from the store, another store, …
            log.warning("not continuing MLflow run %s: %s", run_id, err)
            return False
        if previous.info.lifecycle_stage != "active" or previous.info.experiment_id != current.info.experiment_id:
            return False
        mlflow.end_run()
        client.delete_run(current.info.run_id)
        mlflow.start_run(run_id=run_id)
        old_params = previous.data.params
        mlflow.log_params({k: v for k, v in self._params.items() if k not in old_params})
        changed = {f"resume.{step}.{k}": v for k, v in self._params.items() if k in old_params and old_params[k] != v}
        resumes = int(previous.data.tags.get("openvla.resumes", "0")) + 1
        mlflow.set_tags({**owner_tags(), **revision_tags(), **changed, "openvla.resumes": str(resumes),
                         f"openvla.resumed_at_step.{resumes}": str(step)})  # fmt: skip
        log.info("continuing MLflow run %s from step %d (resume %d)", run_id, step, resumes)
        return True

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._mlflow is not None:
            values = _finite(metrics)
            if values:
                self._mlflow.log_metrics(values, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and Path(directory).is_dir():
            self._mlflow.log_artifacts(str(directory), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextlib.contextmanager
def stage_run(
    stage: str,
    config: Any | None = None,
    experiment: str = "openvla-pipeline",
    extra_params: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> Iterator[StageRun]:
    """Open one MLflow run for a stage execution.

    ``config`` is the stage's config dataclass (logged flat as params); ``enabled=False`` (e.g. on ranks other than
    0) or ``OPENVLA_TRACKING=off`` yields a handle that logs nothing. A failing stage ends its run as FAILED, an
    interrupted one (Ctrl-C) as KILLED; runs of earlier stage processes that died are marked KILLED first.
    """
    if not (enabled and tracking_enabled()):
        yield StageRun(None)
        return
    import mlflow

    uri = tracking_uri()
    default_store = "MLFLOW_TRACKING_URI" not in os.environ  # asked before set_tracking_uri, which sets it
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifact_location = None
        if default_store:
            artifact_location = (store_root() / DEFAULT_ARTIFACTS).as_uri()
        with contextlib.suppress(Exception):  # another stage may create it at the same moment
            mlflow.create_experiment(experiment, artifact_location=artifact_location)
    exp = mlflow.set_experiment(experiment)
    try:
        mark_dead_runs(mlflow.MlflowClient(), exp.experiment_id)
    except Exception as err:  # never fail a stage over bookkeeping of older runs
        log.warning("could not check for MLflow runs left RUNNING by dead processes: %s", err)
    tags = {"stage": stage, **revision_tags(), **owner_tags()}
    mlflow.start_run(run_name=stage, tags=tags)
    handle = StageRun(mlflow)
    try:
        params: dict[str, Any] = {}
        if config is not None:
            params.update(to_flat_dict(config))
        params.update(extra_params or {})
        handle.log_params(params)
        log.info("MLflow run %s (stage %s) in %s", handle.run_id, stage, uri)
        yield handle
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except SystemExit as err:
        mlflow.end_run("FINISHED" if err.code in (None, 0) else "FAILED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """Write a stage's summary metrics as JSON (the file ``dvc metrics show`` reads), atomically."""
    atomic_write_json(path, dict(metrics))
