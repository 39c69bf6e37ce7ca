"""Hugging Face format: export in the official layout, loading through transformers' Auto classes (ours and
official-format directories), exact round trip of predict_action, dtype / low_cpu_mem_usage, the export stage.

One tiny model is built, saved as the training stages save it (``save_pretrained`` + ``dataset_statistics.json``)
and exported once per module; the tests read that export.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hf_fixtures import images, norm_stats, official_config, official_param_shapes, tiny_vla, write_official_directory
from PIL import Image

import openvla  # registers the HF classes with transformers
from openvla.hf.export import export_hf
from openvla.hf.official import (
    OFFICIAL_CONFIG_KEYS,
    OFFICIAL_PREPROCESSOR_KEYS,
    LayoutError,
    check_official_layout,
    to_official_names,
    to_timm_names,
    weight_keys,
)

INSTRUCTIONS = ["pick up the black bowl", "open the top drawer and put the bowl inside", "Stack the cups"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_vla(seed=0)


@pytest.fixture(scope="module")
def source_dir(tiny, tmp_path_factory):
    """What the finetune stage leaves: a save_pretrained directory plus dataset_statistics.json."""
    directory = tmp_path_factory.mktemp("merged")
    tiny.save_pretrained(str(directory))
    (directory / "dataset_statistics.json").write_text(json.dumps(tiny.config.norm_stats))
    return directory


@pytest.fixture(scope="module")
def exported(source_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny-hf"
    summary = export_hf(source_dir, out, max_shard_size="5GB", dtype="auto", tokenizer="mistral-v1")
    return out, summary


@pytest.fixture(scope="module")
def export_dir(exported):
    return exported[0]


@pytest.fixture(scope="module")
def reference_inputs(tiny):
    """Inputs built with the training-side objects (not the exported processor)."""
    from openvla.hf.processing import PrismaticProcessor
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.prompts import build_action_prompt
    from openvla.model.text_tokenizer import load_text_tokenizer

    processor = PrismaticProcessor(
        PrismaticImageProcessor.from_vla_config(tiny.config), load_text_tokenizer("mistral-v1")
    )
    prompts = [build_action_prompt(text, tiny.config.llm_backbone_id) for text in INSTRUCTIONS]
    pil = [Image.fromarray(img) for img in images(len(prompts))]
    return prompts, pil, processor


# -- the exported files --------------------------------------------------------------------------------------------
def test_export_writes_the_official_files_and_keys(exported, tiny):
    export_dir, summary = exported
    config = json.loads((export_dir / "config.json").read_text())
    assert set(OFFICIAL_CONFIG_KEYS) <= set(config)
    assert config["model_type"] == "openvla"
    assert config["architectures"] == ["OpenVLAForActionPrediction"]
    assert config["pad_token_id"] == 32000 and config["pad_to_multiple_of"] == 64
    assert config["torch_dtype"] == "float32"
    assert config["text_config"]["vocab_size"] == 32064 and config["text_config"]["hidden_size"] == 128
    assert config["norm_stats"] == tiny.config.norm_stats
    assert json.loads((export_dir / "dataset_statistics.json").read_text()) == tiny.config.norm_stats

    pre = json.loads((export_dir / "preprocessor_config.json").read_text())
    assert set(OFFICIAL_PREPROCESSOR_KEYS) <= set(pre)
    assert pre["image_processor_type"] == "PrismaticImageProcessor" and pre["processor_class"] == "PrismaticProcessor"
    assert pre["input_sizes"] == [[3, 112, 112], [3, 112, 112]]
    assert pre["means"] == [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]]
    assert pre["tvf_resize_params"][0] == {"antialias": True, "interpolation": 3, "max_size": None, "size": [112, 112]}
    assert json.loads((export_dir / "processor_config.json").read_text()) == {"processor_class": "PrismaticProcessor"}

    tok = json.loads((export_dir / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "LlamaTokenizer"
    assert tok["add_bos_token"] is True and tok["add_eos_token"] is False
    assert (
        tok["added_tokens_decoder"]["32000"]["content"] == "<PAD>" and tok["added_tokens_decoder"]["32000"]["special"]
    )
    assert (export_dir / "tokenizer.json").is_file() and (export_dir / "tokenizer.model").is_file()
    check_official_layout(export_dir)

    assert summary["num_parameters"] == sum(p.numel() for p in tiny.parameters())
    assert summary["num_shards"] == 1 and summary["dtype"] == "float32" and summary["num_datasets"] == 2
    assert summary["size_bytes"] > 4 * summary["num_parameters"]


def test_export_has_exactly_the_official_parameter_names(export_dir):
    config = json.loads((export_dir / "config.json").read_text())
    expected = set(official_param_shapes(config))
    keys = set(weight_keys(export_dir))
    assert keys == expected
    assert any(k.endswith("blocks.0.ls1.scale_factor") for k in keys)
    assert not any(".gamma" in k for k in keys)


def test_name_mapping_is_reversible():
    timm_sd = {
        "vision_backbone.featurizer.blocks.3.ls2.gamma": 1,
        "projector.fc1.weight": 2,
        "x.rotary_emb.inv_freq": 3,
    }
    official = to_official_names(timm_sd)
    assert official == {"vision_backbone.featurizer.blocks.3.ls2.scale_factor": 1, "projector.fc1.weight": 2}
    assert to_timm_names(official) == {"vision_backbone.featurizer.blocks.3.ls2.gamma": 1, "projector.fc1.weight": 2}


# -- loading the export ---------------------------------------------------------------------------------------------
def test_auto_classes_load_the_export_and_predict_exactly_as_before(export_dir, tiny, reference_inputs):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from openvla.hf.processing import PrismaticProcessor
    from openvla.model.configuration import OpenVLAConfig
    from openvla.model.vla import OpenVLAForActionPrediction

    assert isinstance(AutoConfig.from_pretrained(export_dir), OpenVLAConfig)
    model = AutoModelForImageTextToText.from_pretrained(export_dir).eval()
    assert isinstance(model, OpenVLAForActionPrediction)
    assert openvla.AutoModelForVision2Seq is AutoModelForImageTextToText
    processor = AutoProcessor.from_pretrained(export_dir)
    assert isinstance(processor, PrismaticProcessor)

    before, after = tiny.state_dict(), model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)

    prompts, pil, reference = reference_inputs
    all_actions = []
    for prompt, image in zip(prompts, pil, strict=True):
        inputs = processor(prompt, image)
        expected_inputs = reference(prompt, image)
        assert set(inputs) == {"input_ids", "attention_mask", "pixel_values"}
        for key in inputs:
            assert torch.equal(inputs[key], expected_inputs[key]), key
        tokens_before = tiny.generate_action_tokens(
            **{k: inputs[k] for k in ("input_ids", "pixel_values", "attention_mask")}
        )
        tokens_after = model.generate_action_tokens(
            **{k: inputs[k] for k in ("input_ids", "pixel_values", "attention_mask")}
        )
        assert torch.equal(tokens_before, tokens_after)
        assert (tokens_after >= 32000 - 256).all() and (tokens_after < 32000).all()
        for key in ("libero_embedded", "bridge_orig"):
            expected = tiny.predict_action(**inputs, unnorm_key=key, do_sample=False)
            actual = model.predict_action(**inputs, unnorm_key=key, do_sample=False)
            assert actual.shape == (7,) and np.array_equal(actual, expected)
        all_actions.append(actual)
        with torch.no_grad():
            assert torch.equal(tiny(**inputs).logits, model(**inputs).logits)
    assert len({a.tobytes() for a in all_actions}) > 1  # the actions depend on the inputs

    batch = processor(prompts, pil, padding=True)
    batched = model.predict_action(**batch, unnorm_key="bridge_orig")
    singles = [
        model.predict_action(**processor(p, i), unnorm_key="bridge_orig") for p, i in zip(prompts, pil, strict=True)
    ]
    np.testing.assert_array_equal(batched, np.stack(singles))


def test_dtype_bfloat16_and_low_cpu_mem_usage_load_as_users_expect(export_dir, tiny, reference_inputs):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(export_dir, dtype=torch.bfloat16, low_cpu_mem_usage=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    reference = tiny.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key].to(torch.bfloat16)), key
    prompts, pil, processor = reference_inputs
    action = model.predict_action(**processor(prompts[0], pil[0]), unnorm_key="libero_embedded")
    assert action.shape == (7,) and action.dtype == np.float32 and np.isfinite(action).all()

    legacy = AutoModelForImageTextToText.from_pretrained(export_dir, torch_dtype=torch.bfloat16)  # OpenVLA README name
    assert {p.dtype for p in legacy.parameters()} == {torch.bfloat16}

    model32 = AutoModelForImageTextToText.from_pretrained(export_dir, low_cpu_mem_usage=True, device_map="cpu")
    assert {p.dtype for p in model32.parameters()} == {torch.float32}
    assert all(torch.equal(v, reference[k]) for k, v in model32.state_dict().items())


def test_export_refuses_a_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an HF model directory"):
        export_hf(tmp_path, tmp_path / "out")
    (tmp_path / "latest").write_text("checkpoints/step-000009\n")
    with pytest.raises(FileNotFoundError, match="step-000009"):
        export_hf(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_layout_check_names_the_problem(export_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    del config["pad_to_multiple_of"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(LayoutError, match="pad_to_multiple_of"):
        check_official_layout(broken)


# -- an official-format directory -----------------------------------------------------------------------------------
def test_official_layout_directory_loads_with_the_same_parameters(tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from openvla.hf.processing import PrismaticProcessor
    from openvla.model.configuration import OpenVLAConfig
    from openvla.model.vla import OpenVLAForActionPrediction

    directory = tmp_path / "openvla-official-tiny"
    written = write_official_directory(directory, seed=3)
    config = AutoConfig.from_pretrained(directory)  # auto_map points at remote code that is not there: ignored
    assert isinstance(config, OpenVLAConfig) and config.text_config.hidden_size == 64

    model, info = AutoModelForImageTextToText.from_pretrained(directory, output_loading_info=True)
    assert isinstance(model, OpenVLAForActionPrediction)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = model.state_dict()
    assert state.keys() == written.keys()
    for key, tensor in written.items():
        assert torch.equal(state[key].to(torch.bfloat16), tensor), key
        assert torch.equal(state[key], tensor.to(state[key].dtype)), key

    processor = AutoProcessor.from_pretrained(directory)
    assert isinstance(processor, PrismaticProcessor)
    inputs = processor(
        "In: What action should the robot take to pick up the bowl?\nOut:", Image.fromarray(images(1)[0])
    )
    assert inputs["pixel_values"].shape == (1, 6, 56, 56)
    assert inputs["input_ids"][0, 0].item() == 1  # BOS
    model32 = AutoModelForImageTextToText.from_pretrained(directory, dtype=torch.float32)
    action = model32.predict_action(**inputs, unnorm_key="bridge_orig")
    stats = official_config()["norm_stats"]["bridge_orig"]["action"]
    assert action.shape == (7,)
    assert (action[:6] >= np.array(stats["q01"][:6]) - 1e-6).all() and (
        action[:6] <= np.array(stats["q99"][:6]) + 1e-6
    ).all()


# -- registration on import -------------------------------------------------------------------------------------------
def test_import_openvla_is_light_and_registers_when_transformers_arrives():
    code = (
        "import sys, openvla\n"
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "from transformers import AutoConfig, AutoImageProcessor\n"
        "assert type(AutoConfig.for_model('openvla')).__name__ == 'OpenVLAConfig'\n"
        "from openvla.model.image_processing import PrismaticImageProcessor\n"
        "from transformers.models.auto.image_processing_auto import get_image_processor_class_from_name as f\n"
        "assert f('PrismaticImageProcessor') is PrismaticImageProcessor\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


# -- the stage -------------------------------------------------------------------------------------------------------
def test_export_stage_writes_sharded_bf16_export_metrics_and_mlflow_run(source_dir, tmp_path, isolated_mlflow):
    import mlflow
    from typer.testing import CliRunner

    from stages.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(
        "project:\n  name: hf-test\n"
        "export:\n  name: tiny\n  max_shard_size: 8MB\n  dtype: bfloat16\n  max_artifact_mb: 100\n"
    )
    args = ["export", "--source", str(source_dir), "--models-dir", str(tmp_path / "models")]
    args += ["--metrics", str(tmp_path / "metrics.json"), "--params", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "models" / "tiny-hf"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dtype"] == "bfloat16" and metrics["num_shards"] > 1
    assert (out / "model.safetensors.index.json").is_file()
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert json.loads((out / "dataset_statistics.json").read_text()) == norm_stats()
    check_official_layout(out)

    runs = mlflow.search_runs(experiment_names=["hf-test"], output_format="list")
    assert len(runs) == 1 and runs[0].data.tags["stage"] == "export"
    assert runs[0].data.metrics["num_shards"] == metrics["num_shards"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "model")}
    assert "model/config.json" in artifacts and "model/model.safetensors.index.json" in artifacts


def test_checkpoint_is_found_through_a_run_directory_latest_pointer(tmp_path):
    from openvla.hf.export import find_statistics, resolve_checkpoint

    run = tmp_path / "runs" / "pretrain"
    step = run / "checkpoints" / "step-000200"
    step.mkdir(parents=True)
    (step / "config.json").write_text("{}")
    (step / "model.safetensors").write_bytes(b"")
    (run / "latest").write_text("checkpoints/step-000200\n")
    (run / "dataset_statistics.json").write_text(json.dumps({"libero_embedded": {"action": {}}}))
    assert resolve_checkpoint(run) == step
    assert resolve_checkpoint(step) == step
    assert find_statistics(step, run) == {"libero_embedded": {"action": {}}}
    with pytest.raises(FileNotFoundError, match="statistics file not found"):
        find_statistics(step, run, tmp_path / "missing.json")


def test_openvla_7b_config_is_written_with_the_official_values():
    from openvla.hf.official import official_config_dict
    from openvla.model.configs import get_model_config

    config = official_config_dict(get_model_config("openvla-7b"), "bfloat16")
    assert config["vision_backbone_id"] == "dinosiglip-vit-so-224px"
    assert config["llm_backbone_id"] == "llama2-7b-pure"
    assert config["arch_specifier"] == "no-align+fused-gelu-mlp"
    assert config["hf_llm_id"] == "meta-llama/Llama-2-7b-hf"
    assert config["timm_model_ids"] == ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
    assert config["image_sizes"] == [224, 224] and config["timm_override_act_layers"] == [None, None]
    assert config["image_resize_strategy"] == "resize-naive" and config["use_fused_vision_backbone"] is True
    assert config["llm_max_length"] == 2048 and config["n_action_bins"] == 256
    text = config["text_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"]) == (4096, 32, 11008)
    assert (text["vocab_size"], text["pad_token_id"], text["torch_dtype"], text["rope_theta"]) == (
        32064,
        32000,
        "bfloat16",
        10000.0,
    )
    assert "timm_model_kwargs" not in config  # null for full-size backbones: nothing the official code would not know


def test_hub_style_text_config_with_four_keys_means_llama2_7b(tmp_path):
    """The hub config.json of openvla-7b carries only model_type/pad_token_id/torch_dtype/vocab_size in text_config."""
    from transformers import AutoConfig

    config = official_config()
    config.pop("timm_model_kwargs")
    config["image_sizes"] = [224, 224]
    config["text_config"] = {
        "model_type": "llama",
        "pad_token_id": 32000,
        "torch_dtype": "bfloat16",
        "vocab_size": 32064,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AutoConfig.from_pretrained(tmp_path)
    text = loaded.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size, text.num_attention_heads) == (
        4096,
        32,
        11008,
        32,
    )
    assert text.vocab_size == 32064 and loaded.base_vocab_size == 32000 and loaded.space_token_id == 29871
