"""Export a trained checkpoint as a Hugging Face directory in the official OpenVLA layout (DESIGN §10).

    export_hf("runs/finetune/merged", "models/openvla-embedded-hf")

Input: an HF ``save_pretrained`` directory of ``OpenVLAForActionPrediction`` (the fine-tuning stage's ``merged/``,
a pretraining ``checkpoints/step-XXXXXX/``), or a run directory with a ``latest`` pointer (``runs/pretrain``).
Output (written atomically): ``config.json`` with the official keys, ``model*.safetensors`` (sharded above
``max_shard_size``) with the official parameter names, ``preprocessor_config.json`` and ``processor_config.json``
as the official ones, the Llama tokenizer files (``<PAD>`` = 32000), ``dataset_statistics.json``, and the
fitted ``action_tokenizer/`` when the checkpoint has one (see ``openvla.hf.loading``). The
directory is checked (layout, names, every tensor read back equal) before it replaces a previous export.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from openvla.hf.loading import ACTION_TOKENIZER_DIR, attach_action_tokenizer
from openvla.hf.official import (
    IMAGE_PROCESSOR_TYPE,
    PROCESSOR_CLASS,
    LayoutError,
    check_official_layout,
    official_config_dict,
)
from openvla.hf.tokenizer_files import write_tokenizer_files
from openvla.io import atomic_directory, atomic_write_json

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
STATISTICS_FILE = "dataset_statistics.json"


def _has_weights(directory: Path) -> bool:
    return (directory / "model.safetensors").is_file() or (directory / "model.safetensors.index.json").is_file()


def resolve_checkpoint(source: str | Path) -> Path:
    """The HF model directory behind ``source`` (itself, or what a run directory's ``latest`` pointer names)."""
    source = Path(source)
    if (source / "config.json").is_file() and _has_weights(source):
        return source
    latest = source / "latest"
    if latest.is_file() or latest.is_dir():
        target = latest.resolve() if latest.is_dir() else None
        if target is None:
            name = latest.read_text().strip()
            candidates = [source / name, source / "checkpoints" / name, Path(name)]
            target = next((c for c in candidates if c.is_dir()), None)
            if target is None:
                raise FileNotFoundError(f"{latest}: points at {name!r}, which is not a directory under {source}")
        if (target / "config.json").is_file() and _has_weights(target):
            return target
        raise FileNotFoundError(f"{target} (from {latest}): no config.json + model.safetensors (an HF model directory)")
    raise FileNotFoundError(
        f"{source}: not an HF model directory (config.json + model.safetensors) and no 'latest' pointer; "
        "expected runs/finetune/merged, runs/pretrain or a checkpoint directory"
    )


def find_statistics(checkpoint: Path, source: Path, explicit: str | Path | None = None) -> dict | None:
    """Dataset statistics for ``norm_stats``: an explicit file, else the checkpoint's or its run directory's."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: statistics file not found (export --statistics)")
        return json.loads(path.read_text())
    for directory in (checkpoint, source, *list(checkpoint.parents)[:3]):
        path = directory / STATISTICS_FILE
        if path.is_file():
            log.info("dataset statistics from %s", path)
            return json.loads(path.read_text())
    return None


def _load_image_processor(checkpoint: Path, config: Any) -> Any:
    from openvla.model.image_processing import PrismaticImageProcessor

    pre = checkpoint / "preprocessor_config.json"
    if pre.is_file() and json.loads(pre.read_text()).get("image_processor_type") == IMAGE_PROCESSOR_TYPE:
        return PrismaticImageProcessor.from_pretrained(str(checkpoint))
    proc = checkpoint / "processor_config.json"
    if proc.is_file():
        nested = json.loads(proc.read_text()).get("image_processor")
        if isinstance(nested, dict) and nested.get("image_processor_type") == IMAGE_PROCESSOR_TYPE:
            return PrismaticImageProcessor(**{k: v for k, v in nested.items() if k != "image_processor_type"})
    log.info("%s has no image processor config: building it from the model config", checkpoint)
    return PrismaticImageProcessor.from_vla_config(config)


def _load_tokenizer(checkpoint: Path, tokenizer_spec: str) -> tuple[Any, Path | None]:
    """The checkpoint's tokenizer when it has one, else ``tokenizer_spec``; plus a SentencePiece file to ship."""
    from openvla.model.text_tokenizer import load_text_tokenizer, resolve_tokenizer_source

    if (checkpoint / "tokenizer_config.json").is_file():
        spec = str(checkpoint)
        spm = checkpoint / "tokenizer.model"
    else:
        spec = tokenizer_spec
        source = resolve_tokenizer_source(tokenizer_spec)
        spm = source if source.is_file() else source / "tokenizer.model"
    return load_text_tokenizer(spec), (spm if spm.is_file() else None)


def _write_preprocessor_config(image_processor: Any, directory: Path) -> None:
    image_processor.save_pretrained(str(directory))
    path = directory / "preprocessor_config.json"
    data = json.loads(path.read_text())
    data["image_processor_type"] = IMAGE_PROCESSOR_TYPE
    data["processor_class"] = PROCESSOR_CLASS
    atomic_write_json(path, dict(sorted(data.items())))


def _write_tokenizer(tokenizer: Any, spm_file: Path | None, directory: Path) -> None:
    """Tokenizer files as the official directory has them, readable by OpenVLA's pinned stack (transformers 4.40,
    tokenizers 0.19) with identical ids: tokenizer.json (merges in the string form 0.19 parses) + tokenizer.model, a
    ``tokenizer_config.json`` naming ``LlamaTokenizer`` with ``add_bos_token`` true, ``add_eos_token`` false,
    ``legacy`` true and the added tokens (``<PAD>`` = 32000 special), and ``special_tokens_map.json``; see
    ``openvla.hf.tokenizer_files``."""
    write_tokenizer_files(tokenizer, directory, spm_file, extra={"processor_class": PROCESSOR_CLASS})


def _verify_weights(directory: Path, state_dict: dict[str, Any]) -> None:
    """Every saved tensor equals the model's (names and values): what loads is what was trained."""
    import torch
    from safetensors import safe_open

    seen: set[str] = set()
    for shard in sorted(directory.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 — safe_open has keys(), not __iter__
                if key not in state_dict:
                    raise LayoutError(f"{shard}: unexpected tensor {key!r} (not in the model)")
                if not torch.equal(f.get_tensor(key), state_dict[key].detach().cpu()):
                    raise LayoutError(f"{shard}: tensor {key!r} differs from the model's")
                seen.add(key)
    saved_storage = {state_dict[k].data_ptr() for k in seen}
    missing = sorted(k for k in set(state_dict) - seen if state_dict[k].data_ptr() not in saved_storage)  # tied: fine
    if missing:
        raise LayoutError(f"{directory}: tensors missing from the export: {missing[:5]}")


def export_hf(
    source: str | Path,
    out_dir: str | Path,
    *,
    max_shard_size: str | int = "5GB",
    dtype: str = "auto",
    tokenizer: str = "mistral-v1",
    statistics: str | Path | None = None,
    run: Any = None,
    max_artifact_mb: float = 2048.0,
) -> dict[str, Any]:
    """Write ``out_dir`` from the checkpoint at ``source``; return the summary metrics.

    ``dtype``: "auto" keeps the checkpoint's dtype; otherwise weights are cast (OpenVLA ships bfloat16).
    ``tokenizer`` is used only when the checkpoint has no tokenizer files (``params.yaml`` ``model.tokenizer``).
    ``run``: an ``openvla.tracking.StageRun``; the directory is logged as MLflow artifacts when it is smaller
    than ``max_artifact_mb`` (a 7B export is not copied into the tracking store; its path is tagged instead).
    """
    import torch

    from openvla.model.vla import OpenVLAForActionPrediction

    if dtype not in DTYPES:
        raise ValueError(f"export.dtype: expected one of {DTYPES}, got {dtype!r}")
    source, out_dir = Path(source), Path(out_dir)
    checkpoint = resolve_checkpoint(source)
    log.info("exporting %s → %s", checkpoint, out_dir)
    model = OpenVLAForActionPrediction.from_pretrained(
        str(checkpoint), dtype="auto" if dtype == "auto" else getattr(torch, dtype)
    )
    model.eval()
    stats = find_statistics(checkpoint, source, statistics)
    if stats is not None:
        model.config.norm_stats = stats
    elif not model.config.norm_stats:
        log.warning("no dataset statistics for %s: predict_action cannot unnormalize with this export", checkpoint)
    processor_tokenizer, spm_file = _load_tokenizer(checkpoint, tokenizer)
    if processor_tokenizer.pad_token_id != model.config.pad_token_id:
        raise ValueError(
            f"{checkpoint}: tokenizer <PAD> id {processor_tokenizer.pad_token_id} != config pad_token_id "
            f"{model.config.pad_token_id}"
        )
    image_processor = _load_image_processor(checkpoint, model.config)
    weights_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    state_dict = model.state_dict()

    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(str(tmp), max_shard_size=max_shard_size)
        atomic_write_json(tmp / "config.json", official_config_dict(model.config, weights_dtype))
        _write_preprocessor_config(image_processor, tmp)
        _write_tokenizer(processor_tokenizer, spm_file, tmp)
        atomic_write_json(tmp / "processor_config.json", {"processor_class": PROCESSOR_CLASS})
        if model.config.norm_stats:
            atomic_write_json(tmp / STATISTICS_FILE, model.config.norm_stats)
        if (checkpoint / ACTION_TOKENIZER_DIR).is_dir():  # a fitted (e.g. quantile) tokenizer travels with the model
            attach_action_tokenizer(model, checkpoint)  # validates it against the model's vocabulary and bins
            shutil.copytree(checkpoint / ACTION_TOKENIZER_DIR, tmp / ACTION_TOKENIZER_DIR)
        check_official_layout(tmp)
        _verify_weights(tmp, state_dict)

    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    summary: dict[str, Any] = {
        "size_bytes": size,
        "size_mb": round(size / 2**20, 3),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_shards": len([p for p in files if p.suffix == ".safetensors"]),
        "num_files": len(files),
        "dtype": weights_dtype,
        "num_datasets": len(model.config.norm_stats or {}),
    }
    log.info("export written to %s: %s", out_dir, summary)
    if run is not None:
        run.set_tags({"export.path": str(out_dir.resolve()), "export.source": str(checkpoint)})
        if size / 2**20 <= max_artifact_mb:
            run.log_artifacts(out_dir, artifact_path="model")
        else:
            for name in ("config.json", "preprocessor_config.json", STATISTICS_FILE):
                run.log_artifact(out_dir / name, artifact_path="model")
    return summary
