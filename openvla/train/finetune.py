"""LoRA fine-tuning of a pretrained VLA and the merged model it produces (DESIGN §8).

``run_finetune`` loads the base (the pretrain stage's ``latest`` checkpoint or any HF directory of our format),
adds peft LoRA adapters, trains them on the fine-tuning mixture (one process, or DDP under torchrun), and leaves in
``run_dir``: ``checkpoints/`` + ``latest`` (adapter + optimizer, resumable), ``adapter/`` (peft adapter directory),
``merged/`` (the adapters folded into the base on CPU: a complete HF directory with tokenizer, image processor,
action tokenizer and ``dataset_statistics.json`` — the fine-tuning data's statistics, also in the config's
``norm_stats``, which OpenVLA's script forgets) and ``dataset_statistics.json``. The summary includes
``merge_max_abs_logit_diff``: merged vs adapter model on one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from openvla.config import Params
from openvla.data.identity import code_identity, mixture_identity
from openvla.io import atomic_directory, atomic_write_json
from openvla.train.checkpoint import CheckpointManager, load_weights, resolve_checkpoint, seed_rng
from openvla.train.data import load_registry, make_vla_loader, mixture_datasets, per_rank_batch_size, resume_skip
from openvla.train.distributed import DistInfo, barrier, init_distributed, shutdown_distributed
from openvla.train.loop import Checkpointer, LoopConfig, fingerprint, fit
from openvla.train.lora import adapter_state_dict, apply_lora, load_adapter_state_dict, merge_lora
from openvla.train.metrics import MetricsRecorder, keep_run_summary
from openvla.train.optim import build_optimizer, step_decay_scheduler
from openvla.train.pretrain import load_statistics
from openvla.train.strategy import unwrap, wrap_model
from openvla.train.validation import Validator
from openvla.train.vla import (
    ACTION_TOKENIZER_DIR,
    STATISTICS_FILE,
    VLAObjective,
    batch_size_of,
    build_components,
    model_inputs,
    prediction_of,
    write_hf_directory,
)

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def resolve_base(base: str, pretrain_run_dir: str | Path) -> Path:
    """``finetune.base``: "pretrain" → the checkpoint ``<pretrain_run_dir>/latest`` names; else an HF directory."""
    path = resolve_checkpoint(pretrain_run_dir) if base == "pretrain" else Path(base)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"finetune.base: {path} has no config.json (expected an HF model directory)")
    return path


def _tokenizer_sources(base_dir: Path, text_spec: str, action_tokenizer_dir: Path | None) -> tuple[str, Path | None]:
    """The base directory's own tokenizers when it carries them (checkpoints and exports do)."""
    text = str(base_dir) if (base_dir / "tokenizer_config.json").is_file() else text_spec
    if (base_dir / ACTION_TOKENIZER_DIR).is_dir():
        return text, base_dir / ACTION_TOKENIZER_DIR
    if action_tokenizer_dir is not None and action_tokenizer_dir.is_dir():
        return text, action_tokenizer_dir
    return text, None


def run_finetune(
    params: Params,
    *,
    base_dir: str | Path,
    data_dir: str | Path,
    statistics_path: str | Path,
    action_tokenizer_dir: str | Path | None,
    run_dir: str | Path,
    plots_dir: str | Path | None,
    run: Any | None = None,
    device: str = "auto",
    on_step_end: Callable[[int, dict], bool | None] | None = None,
) -> dict[str, Any]:
    """Fine-tune LoRA adapters on the base model and write adapter + merged model; returns the summary."""
    info = init_distributed(device)
    try:
        return _finetune(params, info, Path(base_dir), Path(data_dir), Path(statistics_path),
                         Path(action_tokenizer_dir) if action_tokenizer_dir else None, Path(run_dir), plots_dir, run,
                         on_step_end)  # fmt: skip
    finally:
        shutdown_distributed()


def _finetune(
    params: Params,
    info: DistInfo,
    base_dir: Path,
    data_dir: Path,
    statistics_path: Path,
    action_tokenizer_dir: Path | None,
    run_dir: Path,
    plots_dir: str | Path | None,
    run: Any | None,
    on_step_end: Callable[[int, dict], bool | None] | None,
) -> dict[str, Any]:
    from openvla.model import image_size_of

    cfg = params.finetune
    if info.device.type == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    mixture = cfg.mixture or params.data.mixture
    load_registry(params.data)
    mixture_key = "finetune.mixture" if cfg.mixture else "data.mixture"
    statistics = load_statistics(statistics_path, mixture, mixture_key)
    torch.manual_seed(cfg.seed)  # same base + adapter + fresh-module init on every rank
    model, changes, fresh = load_bridged_base(base_dir, params, statistics)
    model.config.norm_stats = statistics
    model.config.image_augmentation = bool(cfg.image_augmentation)  # the inference transform crops then
    if info.is_main:
        record_bridge(run, run_dir, model.config, changes, fresh)
    text_spec, action_dir = _tokenizer_sources(base_dir, params.model.tokenizer, action_tokenizer_dir)
    components = build_components(model.config, text_spec, action_dir)
    peft_model = apply_lora(model, cfg.lora_rank, cfg.alpha, cfg.lora_dropout, cfg.target_modules, fully_trained=fresh)

    manager = CheckpointManager(run_dir, keep_last=cfg.keep_last)
    recipe = {k: getattr(cfg, k) for k in ("base", "lora_rank", "lora_alpha", "lora_dropout", "target_modules", "lr",
                                           "batch_size", "grad_accumulation", "grad_clip", "seed")}  # fmt: skip
    if cfg.lr_decay_step:  # only then: a constant-lr run keeps the fingerprint it had before the key existed
        recipe["lr_decay_step"] = cfg.lr_decay_step
    checkpointer = Checkpointer(
        manager,
        info,
        # The adapter (LoRA + fully trained modules_to_save) from the live model: DDP replicas are identical, and
        # peft's save_pretrained must extract the adapter itself (it maps modules_to_save names on the way).
        lambda directory, state: peft_model.save_pretrained(str(directory)),
        fingerprint(
            {
                "recipe": recipe,
                "mixture": mixture,
                "rlds": mixture_identity(data_dir, mixture_datasets(mixture, mixture_key)),
                "base": base_identity(base_dir),
                "bridge": changes,
                "stats": statistics,
                "data": vars(params.data),
            }
        ),
        model_state=lambda m: adapter_state_dict(unwrap(m)),
        code_fingerprint=fingerprint(code_identity()),
    )
    resume_from = checkpointer.find_resume(cfg.resume == "auto", total_steps=cfg.steps)
    checkpointer.continue_tracking(run, resume_from)
    if resume_from is not None:
        load_adapter_state_dict(peft_model, load_adapter_weights(resume_from))
    seed_rng(cfg.seed + 1 + info.rank)
    counts = {
        "trainable_params": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in peft_model.parameters()),
    }
    strategy = "ddp" if info.world_size > 1 else "none"
    model_w = wrap_model(peft_model, strategy, info)
    optimizer = build_optimizer(model_w, cfg.lr, weight_decay=0.0)
    scheduler = step_decay_scheduler(optimizer, cfg.lr_decay_step)
    restored = checkpointer.restore(resume_from, model_w, optimizer, scheduler) if resume_from else {}
    start, data_state = int(restored.get("step", 0)), restored.get("data", {})

    recorder = None
    if info.is_main:
        recorder = MetricsRecorder(run, run_dir / "history.jsonl", plots_dir)
        recorder.resume_from(start)
        atomic_write_json(run_dir / STATISTICS_FILE, statistics)
    loader = make_vla_loader(
        data_dir=data_dir,
        mixture=mixture,
        statistics=statistics,
        data_cfg=params.data,
        image_size=image_size_of(model.config),
        image_augmentation=cfg.image_augmentation,
        transform=components.transform,
        collator=components.collator,
        batch_size=per_rank_batch_size(cfg.batch_size, info),
        seed=cfg.seed,
        info=info,
        skip_frames=resume_skip(data_state, info, per_rank_batch_size(cfg.batch_size, info) * cfg.grad_accumulation),
    )
    batches = iter(loader)
    autocast = info.device.type == "cuda"
    summary: dict[str, Any] = {}
    if start < cfg.steps:
        validator = Validator.for_stage(
            cfg,
            data_dir=data_dir,
            mixture=mixture,
            statistics=statistics,
            data_cfg=params.data,
            image_size=image_size_of(model.config),
            components=components,
            info=info,
            autocast_bf16=autocast,
        )
        summary = fit(
            model_w,
            optimizer,
            scheduler,
            batches,
            VLAObjective(components.action_tokenizer, info.device, autocast_bf16=autocast),
            LoopConfig.of_stage(cfg),
            info,
            start_step=start,
            data_state=data_state,
            checkpointer=checkpointer,
            recorder=recorder,
            batch_size_of=batch_size_of,
            on_step_end=on_step_end,
            desc="finetune",
            validate=validator,
        )
    summary.update({"resumed_from_step": start, "world_size": info.world_size, "lora_alpha": cfg.alpha, **counts})
    if info.is_main:
        summary.update(_write_outputs(peft_model, components, statistics, run_dir, next(batches)))
        if recorder is not None:
            recorder.write_plots()
            for key in ("loss", "action_accuracy", "l1"):
                mean = recorder.tail_mean(key)
                if mean is not None:
                    summary.setdefault(f"last10_{key}", mean)
        if run is not None:
            run.log_artifact(run_dir / STATISTICS_FILE)
            run.log_artifacts(run_dir / "adapter", artifact_path="adapter")
            run.log_artifact(run_dir / "merged" / "config.json", artifact_path="merged")
            if plots_dir:
                run.log_artifacts(plots_dir, artifact_path="plots")
        summary = keep_run_summary(run_dir, summary, trained=start < cfg.steps)
    barrier()
    return summary


def load_bridged_base(base_dir: Path, params: Params, statistics: dict) -> tuple[torch.nn.Module, list[str], list[str]]:
    """The base model with ``params.yaml``'s action options: ``(model, changes, fresh)``.

    ``bridge_action_options`` gives the base's config the options (or refuses another backbone / LLM); the model
    is built from that config and the base's weights loaded into it. ``fresh`` names the parameters the base did
    not have (or had in another shape, e.g. action slots for another K): transformers initialised them, and they
    train in full next to the LoRA adapters. Generic: an L1 head, action slots, a proprio projector or FiLM
    projections are all just "parameters the base lacked". Modules the base has and the options drop (an L1 head
    when params.yaml asks for tokens) are not loaded, and listed in the log.
    """
    from openvla.model import OpenVLAConfig, OpenVLAForActionPrediction
    from openvla.model.configs import bridge_action_options

    base_config = OpenVLAConfig.from_pretrained(str(base_dir))
    config, changes = bridge_action_options(base_config, params, statistics, base_dir)
    config._attn_implementation = params.model.attn_implementation
    model, info = OpenVLAForActionPrediction.from_pretrained(
        str(base_dir),
        config=config,
        attn_implementation=params.model.attn_implementation,
        output_loading_info=True,
        ignore_mismatched_sizes=bool(changes),  # only option modules can change shape: the architecture is checked
    )
    reshaped = [entry[0] for entry in info.get("mismatched_keys", [])]
    fresh = sorted(set(info.get("missing_keys", [])) | set(reshaped))
    names = {name for name, _ in model.named_parameters()}
    fresh = [name for name in fresh if name in names]  # parameters only (no buffers)
    if info.get("unexpected_keys"):
        log.info("%s: %d tensors of the base are not part of the new options (dropped), e.g. %s", base_dir,
                 len(info["unexpected_keys"]), sorted(info["unexpected_keys"])[:3])  # fmt: skip
    if changes:
        log.info("fine-tuning %s into params.yaml's action options: %s; %d freshly initialised tensors (%d "
                 "parameters) train in full", base_dir, "; ".join(changes), len(fresh),
                 sum(p.numel() for n, p in model.named_parameters() if n in set(fresh)))  # fmt: skip
    elif fresh:
        raise ValueError(f"{base_dir}: the base lacks {fresh[:5]} although its config has params.yaml's options "
                         "(an incomplete checkpoint?)")  # fmt: skip
    return model, changes, fresh


def record_bridge(run: Any | None, run_dir: Path, config: Any, changes: list[str], fresh: list[str]) -> None:
    """What fine-tuning changed: ``bridged_action_options`` in the config (so the merged model and its export carry
    it), ``<run_dir>/config.json``, and MLflow (param ``finetune.bridge``, tag with the fresh tensor count)."""
    if changes:
        config.bridged_action_options = list(changes)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.to_json_file(str(run_dir / "config.json"))
    if run is not None:
        run.log_params({"finetune.bridge": "; ".join(changes) or "none"})
        run.set_tags({"finetune.bridge.fresh_tensors": len(fresh)})
        run.log_artifact(run_dir / "config.json")


def base_identity(base_dir: Path) -> dict[str, Any]:
    """What identifies the base weights cheaply: path, weight file sizes and modification times, and the pretrain
    run's fingerprint, so adapters trained on an older base of the same path are not resumed. A pretrain rerun with
    the same configuration (after a data fix, say) writes the same path, sizes and fingerprint: only the times differ.
    """
    from openvla.train.checkpoint import TRAINER_STATE, checkpoint_fingerprint

    sizes = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(base_dir.glob("*.safetensors"))}
    trained = checkpoint_fingerprint(base_dir) if (base_dir / TRAINER_STATE).is_file() else None
    return {"path": str(base_dir.resolve()), "sizes": sizes, "pretrain_fingerprint": trained}


def load_adapter_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    path = checkpoint / ADAPTER_WEIGHTS
    if path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path))
    return load_weights(checkpoint)


def _write_outputs(
    peft_model: Any, components: Any, statistics: dict, run_dir: Path, check_batch: dict
) -> dict[str, float]:
    """adapter/ and merged/ (rank 0); returns how far the merged model's logits are from the adapter model's."""
    peft_model.eval()
    inputs = {k: v for k, v in model_inputs(check_batch).items() if k != "labels"}
    peft_model.to("cpu")
    with torch.no_grad():
        adapter_logits = prediction_of(peft_model(**inputs))
    with atomic_directory(run_dir / "adapter") as directory:
        peft_model.save_pretrained(str(directory))
        atomic_write_json(directory / STATISTICS_FILE, statistics)
    merged = merge_lora(peft_model)
    merged.eval()
    with torch.no_grad():
        merged_logits = prediction_of(merged(**inputs))
    diff = float((merged_logits - adapter_logits).abs().max())
    with atomic_directory(run_dir / "merged") as directory:
        write_hf_directory(directory, merged, None, components, statistics)
    log.info("merged model → %s (max |logit diff| vs adapter model: %.2e)", run_dir / "merged", diff)
    return {"merge_max_abs_logit_diff": diff}
