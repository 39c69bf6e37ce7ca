"""What every stage does around its one library call: logging, params, the user's registry, MLflow, metrics.

    with stage("stats", params, metrics=metrics) as s:
        s.summary = write_statistics(..., bins=s.cfg.histogram_bins)

``stage`` sets up logging, reads ``params.yaml`` (``s.params``, and the stage's own section as ``s.cfg``), runs the
user's ``data.registry_file`` once before any dataset name is resolved, opens the stage's MLflow run (``s.run``) and,
when the body has set ``s.summary``, writes it to the metrics JSON. Distributed stages pass ``enabled=False`` on
ranks other than 0: they neither log to MLflow nor write metrics.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class StageContext:
    params: Any  # the whole typed params.yaml (openvla.config.Params)
    cfg: Any  # the stage's own section
    run: Any  # the MLflow run (a no-op run when tracking is disabled)
    summary: dict[str, Any] | None = None  # what the stage returns: written to the metrics JSON


@contextlib.contextmanager
def stage(
    name: str,
    params_path: Path,
    *,
    section: str | None = None,
    metrics: Path | None = None,
    extra_params: Callable[[Any], Mapping[str, Any]] | None = None,
    enabled: bool = True,
) -> Iterator[StageContext]:
    """The stage skeleton (module docstring); ``section`` defaults to ``name`` with "-" → "_"; ``extra_params(params)``
    gives what the MLflow run logs besides the section (other sections' keys, resolved paths)."""
    from openvla.config import load_params
    from openvla.logging_utils import setup_logging
    from openvla.tracking import stage_run, write_metrics

    setup_logging()
    params = load_params(params_path)
    if params.data.registry_file:  # the user's own datasets, before any name is resolved
        from openvla.data.registry import load_registry_file

        load_registry_file(params.data.registry_file)
    cfg = getattr(params, section or name.replace("-", "_"))
    extra = extra_params(params) if extra_params is not None else None
    with stage_run(name, cfg, experiment=params.project.name, extra_params=extra, enabled=enabled) as run:
        context = StageContext(params, cfg, run)
        yield context
    if enabled and metrics is not None and context.summary is not None:
        write_metrics(metrics, context.summary)


def command_args(command: Callable[..., Any], values: Mapping[str, Any]) -> list[str]:
    """``command``'s options with ``values`` (its ``locals()`` at entry) as command-line arguments, to run it again
    elsewhere (under torchrun) without the stage listing its options twice. Options are ``--name-with-dashes``."""
    args: list[str] = []
    for name in inspect.signature(command).parameters:
        value = values.get(name)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args
