"""Fine-tuning into new action options (issue 13, item 3): an official-layout token-head base (tests/hf_fixtures.py)
becomes an L1 + chunk (K = 4) + proprio + two-camera (+ FiLM) model; the new modules start fresh and train in full
next to LoRA; the change is recorded (config.json, MLflow); the export reloads in a fresh process to the same
actions. A base with another LLM width cannot be bridged, and says so."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_fixtures import demo_actions, write_libero_hdf5
from hf_fixtures import official_config, write_official_directory

from openvla.config import ConvertConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
FILM = True  # OFT+ (FiLM) on top of OFT: exercises "parameters the base lacked" inside the vision backbone
BASE_NAME = "official-tiny"  # a named configuration describing the synthetic official directory (registered below)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RLDS (3 episodes, agentview + wrist, 8-D LIBERO proprio), statistics, tokenizer, the official-layout base."""
    from openvla.actions import ActionTokenizer, save_action_tokenizer
    from openvla.data import compute_dataset_statistics
    from openvla.data.convert import convert_dataset

    root = tmp_path_factory.mktemp("bridge")
    demos = [{"actions": demo_actions(8, seed)} for seed in (0, 1, 2)]
    write_libero_hdf5(root / "raw" / "pick_demo.hdf5", "put the black bowl on the plate", demos, size=32)
    convert_dataset(root / "raw", root / "data" / "rlds", ConvertConfig(dataset_name="libero_embedded"))
    stats = {"libero_embedded": compute_dataset_statistics(root / "data" / "rlds", "libero_embedded")}
    (root / "data" / "stats").mkdir(parents=True)
    (root / "data" / "stats" / "dataset_statistics.json").write_text(json.dumps(stats))
    save_action_tokenizer(ActionTokenizer(32000), root / "data" / "tokenizer")
    write_official_directory(root / "openvla-official-tiny", seed=3)

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"].update(shuffle_buffer=16, num_parallel_calls=1, num_parallel_reads=1, chunk=4, use_proprio=True,
                          cameras=["primary", "wrist"])  # fmt: skip
    params["model"].update(name=BASE_NAME, action_head="l1", parallel_decoding=True, film=FILM)
    params["finetune"].update(base=str(root / "openvla-official-tiny"), steps=3, batch_size=2, save_every=0,
                              lora_rank=4, eval_every=3, eval_batches=1)  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from openvla.model import OpenVLAConfig, configs

    base = workspace / "openvla-official-tiny"
    monkeypatch.setitem(configs._CONFIGS, BASE_NAME, lambda: OpenVLAConfig.from_pretrained(str(base)))
    monkeypatch.chdir(workspace)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield workspace
    torch.set_num_threads(threads)


FRESH_PROCESS = textwrap.dedent(
    """
    import sys, numpy as np, torch
    import openvla
    torch.set_num_threads(1)
    model = openvla.AutoModelForImageTextToText.from_pretrained(sys.argv[1]).eval()
    inputs = torch.load(sys.argv[2])
    with torch.no_grad():
        actions = model(**inputs).actions
    np.save(sys.argv[3], actions.float().numpy())
    """
)


def test_official_token_base_finetunes_into_l1_chunks_proprio_two_images_and_reloads_fresh(in_workspace: Path):
    import mlflow

    from openvla.config import load_params
    from openvla.hf.export import export_hf
    from openvla.model import OpenVLAForActionPrediction
    from openvla.train.validation import held_out_frames
    from openvla.train.vla import build_components, model_inputs
    from stages import finetune

    ws = in_workspace
    finetune.main(device="cpu")

    # What changed is in the run's config.json, the merged model's, MLflow and the metrics.
    merged = ws / "runs" / "finetune" / "merged"
    for path in (ws / "runs" / "finetune" / "config.json", merged / "config.json"):
        config = json.loads(path.read_text())
        assert config["action_head"] == "l1" and config["parallel_decoding"] is True, path
        assert config["action_chunk"] == 4 and config["use_proprio"] is True and config["proprio_dim"] == 8, path
        assert config["num_images_in_input"] == 2 and config["camera_roles"] == ["primary", "wrist"], path
        assert config["use_film"] is FILM, path
        assert "action_head: 'tokens' → 'l1'" in config["bridged_action_options"], path
        assert config["text_config"]["hidden_size"] == 64  # the base's LLM
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("openvla-embedded")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'finetune'")
    assert "action_chunk: 1 → 4" in run.data.params["finetune.bridge"]
    assert int(run.data.tags["finetune.bridge.fresh_tensors"]) > 0
    summary = json.loads((ws / "metrics" / "finetune.json").read_text())
    assert np.isfinite(summary["val.action_l1.last"]) and summary["val.best_step"] == 3

    # The new modules trained in full (peft modules_to_save in the adapter), the base's weights only through LoRA.
    from safetensors import safe_open

    with safe_open(str(ws / "runs" / "finetune" / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    for module in ("l1_head.", "proprio_projector.", "action_queries") + (("vision_backbone.film.",) if FILM else ()):
        assert any(module in k and "lora_" not in k for k in keys), module
    base = OpenVLAForActionPrediction.from_pretrained(ws / "openvla-official-tiny")
    tuned = OpenVLAForActionPrediction.from_pretrained(merged)
    film = [n for n, _ in tuned.named_parameters() if ".film." in n]
    assert bool(film) is FILM and all(tuned.get_parameter(n).abs().sum() > 0 for n in film[:1])  # 0 at init
    assert torch.equal(tuned.language_model.lm_head.weight, base.language_model.lm_head.weight)  # not a LoRA target

    # Export, reload in a fresh process, same actions as the model in this process.
    export = ws / "models" / "bridged-hf"
    export_hf(merged, export, tokenizer="mistral-v1")
    exported = json.loads((export / "config.json").read_text())
    assert exported["bridged_action_options"] == config["bridged_action_options"]
    params = load_params(ws / "params.yaml")
    components = build_components(tuned.config, str(merged), merged / "action_tokenizer")
    stats = json.loads((ws / "data" / "stats" / "dataset_statistics.json").read_text())
    frames = held_out_frames(data_dir=ws / "data" / "rlds", mixture="libero_embedded", statistics=stats,
                             data_cfg=params.data, image_size=tuned.config.image_size, num_frames=3, seed=0,
                             cameras=("primary", "wrist"))  # fmt: skip
    batch = components.collator([components.transform(frame) for frame in frames])
    inputs = {k: v for k, v in model_inputs(batch).items() if k not in ("labels", "actions", "action_labels")}
    assert inputs["pixel_values"].shape[1] == 12  # 2 images × (DINOv2 + SigLIP) × RGB
    torch.save(inputs, ws / "inputs.pt")
    with torch.no_grad():
        here = tuned.eval()(**inputs).actions.float().numpy()
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(export), str(ws / "inputs.pt"), str(ws / "fresh.npy")],
                   check=True, cwd=REPO_ROOT)  # fmt: skip
    fresh = np.load(ws / "fresh.npy")
    assert here.shape == fresh.shape == (3, 4, 7)
    # Same weights (export dtype "auto" keeps the merged model's), same inputs, same kernels on one thread: the two
    # processes compute the same numbers; the tolerance only allows for a different BLAS code path.
    np.testing.assert_allclose(fresh, here, rtol=0, atol=1e-6)


def test_a_base_with_another_llm_width_cannot_be_bridged(in_workspace: Path, tmp_path: Path):
    from openvla.config import load_params
    from openvla.train.finetune import load_bridged_base

    other = tmp_path / "wider"
    write_official_directory(other)
    config = official_config()
    config["text_config"]["hidden_size"] = 96
    (other / "config.json").write_text(json.dumps(config))
    params = load_params(in_workspace / "params.yaml")
    stats = json.loads((in_workspace / "data" / "stats" / "dataset_statistics.json").read_text())
    with pytest.raises(ValueError, match=r"wider/config\.json.*text_config\.hidden_size: the base has 96") as err:
        load_bridged_base(other, params, stats)
    assert f"model.name {BASE_NAME!r}" in str(err.value)
