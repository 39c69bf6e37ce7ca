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
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
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


class StageRun:
    """Handle to one stage's MLflow run; every method is a no-op when tracking is off."""

    def __init__(self, mlflow_module: Any | None) -> None:
        self._mlflow = mlflow_module

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
            self._mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

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
    0) or ``OPENVLA_TRACKING=off`` yields a handle that logs nothing. A failing stage ends its run as FAILED.
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
    mlflow.set_experiment(experiment)
    tags = {"stage": stage, **revision_tags()}
    with mlflow.start_run(run_name=stage, tags=tags):
        handle = StageRun(mlflow)
        params: dict[str, Any] = {}
        if config is not None:
            params.update(to_flat_dict(config))
        params.update(extra_params or {})
        handle.log_params(params)
        log.info("MLflow run %s (stage %s) in %s", handle.run_id, stage, uri)
        yield handle


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """Write a stage's summary metrics as JSON (the file ``dvc metrics show`` reads), atomically."""
    atomic_write_json(path, dict(metrics))
