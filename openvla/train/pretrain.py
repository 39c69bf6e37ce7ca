"""VLA pretraining (DESIGN §7): FSDP or DDP over the processes ``torchrun`` started, resumable, tracked.

One call, ``run_pretrain``, does the whole stage on every rank: joins the process group, builds the tokenizers,
image processor and the model (from scratch, from ``model.weights``, or from the run's ``latest`` checkpoint when
resuming), freezes what ``pretrain.freeze`` says, shards it, streams RLDS batches, trains, and leaves in
``run_dir``: ``checkpoints/step-XXXXXX/`` (HF directories + trainer state), ``latest``, ``config.json`` and
``dataset_statistics.json``; rank 0 records metrics (MLflow + ``plots_dir``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from openvla.config import Params
from openvla.data.identity import code_identity, mixture_identity
from openvla.io import atomic_write_json
from openvla.train.checkpoint import CheckpointManager, seed_rng
from openvla.train.data import load_registry, make_vla_loader, mixture_datasets, per_rank_batch_size, resume_skip
from openvla.train.distributed import DistInfo, init_distributed, shutdown_distributed
from openvla.train.loop import Checkpointer, LoopConfig, fingerprint, fit
from openvla.train.metrics import MetricsRecorder, keep_run_summary
from openvla.train.optim import apply_freeze, build_optimizer, build_scheduler
from openvla.train.strategy import effective_strategy, resolve_precision, unwrap, wrap_model
from openvla.train.validation import Validator
from openvla.train.vla import (
    STATISTICS_FILE,
    VLAObjective,
    batch_size_of,
    build_components,
    freeze_unused_parameters,
    wrap_classes_of,
    write_hf_directory,
)

log = logging.getLogger(__name__)


def load_statistics(path: str | Path, mixture: str, key: str = "data.mixture") -> dict[str, Any]:
    """The entries of the statistics JSON for the datasets of ``mixture`` (each dataset keeps its own); ``key`` is
    the params key holding ``mixture``, named when it is unknown."""
    names = mixture_datasets(mixture, key)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset statistics not found (run the `stats` stage first)")
    everything = json.loads(path.read_text())
    missing = [n for n in names if n not in everything]
    if missing:
        raise ValueError(f"{path}: no statistics for {missing} of mixture {mixture!r} (has: {sorted(everything)})")
    return {n: everything[n] for n in names}


def resume_fingerprint(
    params: Params,
    statistics: Mapping[str, Any],
    architecture: Mapping[str, Any] | None = None,
    data_identity: Mapping[str, Any] | None = None,
) -> str:
    """What a checkpoint must share with this run to be resumed: the optimisation recipe, model and data.

    ``architecture`` is the resolved model configuration (``OpenVLAConfig.to_dict()``): a code change to a named
    configuration (a width, an init scale) must start over rather than resume a finished run of the old model,
    because ``runs/pretrain`` persists across ``dvc repro``. ``data_identity`` (``openvla.data.identity``) is the
    RLDS content: new images with the same actions leave the statistics equal and must start over too.
    """
    cfg = params.pretrain
    recipe = {
        k: getattr(cfg, k)
        for k in ("batch_size", "grad_accumulation", "lr", "weight_decay", "schedule", "warmup_steps", "grad_clip")
    }
    recipe.update(freeze=cfg.freeze, seed=cfg.seed)
    if cfg.schedule != "constant":
        recipe["steps"] = cfg.steps  # the schedule's shape depends on the total
    arch = {k: v for k, v in (architecture or {}).items() if k not in ("norm_stats", "transformers_version")}
    content = {"recipe": recipe, "model": vars(params.model), "data": vars(params.data), "stats": statistics}
    return fingerprint({**content, "arch": arch, "rlds": dict(data_identity or {})})


ACTION_OPTION_KEYS = ("action_head", "parallel_decoding", "action_chunk", "action_dim", "use_proprio", "proprio_dim",
                      "num_images_in_input", "camera_roles", "use_film")  # fmt: skip


def _load_model(path: str | Path, attn_implementation: str, options: Any | None = None) -> torch.nn.Module:
    """Weights from a local directory; ``options`` (a config) overrides the action options, so that e.g. the
    official checkpoint gains freshly initialised action slots / heads for chunked training."""
    from openvla.model import OpenVLAForActionPrediction

    overrides = {k: getattr(options, k) for k in ACTION_OPTION_KEYS} if options is not None else {}
    return OpenVLAForActionPrediction.from_pretrained(str(path), attn_implementation=attn_implementation, **overrides)


def run_pretrain(
    params: Params,
    *,
    data_dir: str | Path,
    statistics_path: str | Path,
    action_tokenizer_dir: str | Path,
    run_dir: str | Path,
    plots_dir: str | Path | None,
    run: Any | None = None,
    device: str = "auto",
    on_step_end: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train (or finish training) the VLA; returns the summary metrics (every rank returns the same)."""
    info = init_distributed(device)
    try:
        return _pretrain(params, info, Path(data_dir), Path(statistics_path), Path(action_tokenizer_dir),
                         Path(run_dir), plots_dir, run, on_step_end)  # fmt: skip
    finally:
        shutdown_distributed()


def _pretrain(
    params: Params,
    info: DistInfo,
    data_dir: Path,
    statistics_path: Path,
    action_tokenizer_dir: Path,
    run_dir: Path,
    plots_dir: str | Path | None,
    run: Any | None,
    on_step_end: Callable[[int, dict], None] | None,
) -> dict[str, Any]:
    from openvla.model import build_vla, get_model_config, image_size_of, set_action_options
    from openvla.model.configs import action_options_of

    cfg = params.pretrain
    if info.device.type == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    load_registry(params.data)
    statistics = load_statistics(statistics_path, params.data.mixture)
    model_config = get_model_config(params.model.name)
    model_config.norm_stats = statistics
    set_action_options(model_config, **action_options_of(params), statistics=statistics)
    model_config.image_augmentation = bool(params.data.image_augmentation)  # the inference transform crops then
    components = build_components(model_config, params.model.tokenizer, action_tokenizer_dir)

    manager = CheckpointManager(run_dir, keep_last=cfg.keep_last)
    holder: dict[str, torch.nn.Module] = {}
    checkpointer = Checkpointer(
        manager,
        info,
        lambda directory, state: write_hf_directory(directory, holder["model"], state, components, statistics),
        resume_fingerprint(
            params,
            statistics,
            model_config.to_dict(),
            mixture_identity(data_dir, mixture_datasets(params.data.mixture)),
        ),
        code_fingerprint=fingerprint(code_identity()),
    )
    resume_from = checkpointer.find_resume(cfg.resume == "auto", total_steps=cfg.steps)
    checkpointer.continue_tracking(run, resume_from)

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (each rank shards its own copy)
    if resume_from is not None:
        model = _load_model(resume_from, params.model.attn_implementation)
    elif params.model.weights:
        model = _load_model(params.model.weights, params.model.attn_implementation, model_config)
    else:
        model = build_vla(model_config, attn_implementation=params.model.attn_implementation)
    model.config.norm_stats = statistics
    seed_rng(cfg.seed + 1 + info.rank)  # per-rank randomness from here on (dropout, sampling)
    apply_freeze(model, cfg.freeze)
    frozen_unused = freeze_unused_parameters(model)
    counts = {
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
    }
    wrap = wrap_classes_of(model)
    strategy = effective_strategy(cfg.strategy, info, cfg.mixed_precision)
    if strategy != cfg.strategy:
        log.info("%s on one process in fp32 shards nothing: training the plain module (same updates)", cfg.strategy)
    model = wrap_model(model, strategy, info, wrap_classes=wrap, precision=cfg.mixed_precision,
                       activation_checkpointing=cfg.activation_checkpointing)  # fmt: skip
    holder["model"] = unwrap(model)
    autocast = strategy != "fsdp" and resolve_precision(cfg.mixed_precision, info.device) == "bf16"
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.steps, cfg.warmup_steps)
    restored = checkpointer.restore(resume_from, model, optimizer, scheduler) if resume_from else {}
    start, data_state = int(restored.get("step", 0)), restored.get("data", {})

    recorder = None
    if info.is_main:
        recorder = MetricsRecorder(run, run_dir / "history.jsonl", plots_dir)
        recorder.resume_from(start)
        atomic_write_json(run_dir / STATISTICS_FILE, statistics)
        model_config.to_json_file(str(run_dir / "config.json"))

    summary: dict[str, Any] = {}
    if start < cfg.steps:
        loader = make_vla_loader(
            data_dir=data_dir,
            mixture=params.data.mixture,
            statistics=statistics,
            data_cfg=params.data,
            image_size=image_size_of(model_config),
            image_augmentation=params.data.image_augmentation,
            transform=components.transform,
            collator=components.collator,
            batch_size=per_rank_batch_size(cfg.batch_size, info),
            seed=cfg.seed,
            info=info,
            skip_frames=resume_skip(
                data_state, info, per_rank_batch_size(cfg.batch_size, info) * cfg.grad_accumulation
            ),
        )
        validator = Validator.for_stage(
            cfg,
            data_dir=data_dir,
            mixture=params.data.mixture,
            statistics=statistics,
            data_cfg=params.data,
            image_size=image_size_of(model_config),
            components=components,
            info=info,
            autocast_bf16=autocast,
        )
        summary = fit(
            model,
            optimizer,
            scheduler,
            loader,
            VLAObjective(components.action_tokenizer, info.device, autocast_bf16=autocast),
            LoopConfig.of_stage(cfg),
            info,
            start_step=start,
            data_state=data_state,
            checkpointer=checkpointer,
            recorder=recorder,
            batch_size_of=batch_size_of,
            on_step_end=on_step_end,
            desc="pretrain",
            validate=validator,
        )
    else:
        log.info("pretraining already complete at step %d (%s)", start, resume_from)
    summary.update(
        {
            "resumed_from_step": start,
            "world_size": info.world_size,
            "strategy": cfg.strategy,
            "strategy_used": strategy,
            "frozen_unused_tensors": frozen_unused,
            **counts,
        }
    )
    if info.is_main and recorder is not None:
        for key in ("loss", "action_accuracy", "l1"):
            if f"last10_{key}" not in summary and recorder.tail_mean(key) is not None:
                summary[f"last10_{key}"] = recorder.tail_mean(key)
        recorder.write_plots()
        if run is not None:
            run.log_artifact(run_dir / STATISTICS_FILE)
            run.log_artifact(run_dir / "config.json")
            if plots_dir:
                run.log_artifacts(plots_dir, artifact_path="plots")
    if info.is_main:
        summary = keep_run_summary(run_dir, summary, trained=start < cfg.steps)
    return summary
