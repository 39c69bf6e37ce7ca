"""params.yaml → typed config: defaults, validation errors that name the key, and the shipped params file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openvla.config import (
    ConfigError,
    FinetuneConfig,
    Params,
    load_params,
    load_section,
    params_from_dict,
    to_flat_dict,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_yaml_is_valid_and_sets_every_section():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params = load_params(REPO_ROOT / "params.yaml")
    assert isinstance(params, Params)
    # Every dataclass section appears in the file, so a user sees every knob.
    assert set(raw) == {f for f in Params.__dataclass_fields__}
    for section, values in raw.items():
        declared = set(getattr(params, section).__dataclass_fields__)
        assert set(values) == declared, f"params.yaml section {section!r} differs from openvla/config.py"


def test_missing_keys_take_defaults_and_ints_become_floats():
    params = params_from_dict({"finetune": {"lora_rank": 8, "lr": 1}})
    assert params.finetune.lora_rank == 8
    assert params.finetune.lr == 1.0 and isinstance(params.finetune.lr, float)
    assert params.finetune.lora_dropout == FinetuneConfig().lora_dropout


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"finetune\.lora_rnak: unknown key; did you mean 'lora_rank'"):
        params_from_dict({"finetune": {"lora_rnak": 8}})


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"finetun: unknown section; did you mean 'finetune'"):
        params_from_dict({"finetun": {}})


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("finetune", "lora_rank", "eight", "expected an integer"),
        ("finetune", "lora_rank", True, "expected an integer"),
        ("finetune", "lr", "fast", "expected a number"),
        ("data", "image_augmentation", "yes", "expected true or false"),
        ("bins", "scheme", "gaussian", "expected one of 'uniform' | 'quantile'"),
        ("demos", "task_ids", 3, "expected a list"),
        ("demos", "task_ids", [0, "one"], r"demos\.task_ids\[1\]: expected an integer"),
        ("data", "start_weight", 0, "start_weight ≥ 1"),
    ],
)
def test_wrong_types_are_rejected_with_the_dotted_key(section, key, value, expected):
    with pytest.raises(ConfigError, match=rf"params.yaml: {section}\.{key}.*{expected}|{expected}"):
        params_from_dict({section: {key: value}})


def test_load_params_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("pretrain:\n  steps: many\n")
    with pytest.raises(ConfigError, match=rf"{bad}: pretrain\.steps: expected an integer, got 'many'"):
        load_params(bad)
    with pytest.raises(ConfigError, match="parameters file not found"):
        load_params(tmp_path / "nope.yaml")
    bad.write_text("pretrain: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_load_section_accepts_stage_names_with_hyphens(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("eval_libero:\n  episodes_per_task: 3\n")
    assert load_section(path, "eval-libero").episodes_per_task == 3


def test_configs_are_frozen():
    cfg = FinetuneConfig()
    with pytest.raises(AttributeError):
        cfg.lora_rank = 4  # type: ignore[misc]


def test_to_flat_dict_uses_dotted_keys():
    flat = to_flat_dict(params_from_dict({"bins": {"n_bins": 128}}))
    assert flat["bins.n_bins"] == 128
    assert flat["project.name"] == "openvla-embedded"
