"""The model-agnostic training machinery on a toy model: FSDP over 2 processes equals 1 process, checkpoints are
complete or invisible, a SIGKILLed run resumes to the same parameters, schedules, parameter groups, freezing."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from openvla.train import checkpoint as ckpt
from openvla.train.distributed import init_distributed, shutdown_distributed
from openvla.train.metrics import action_token_sums, summarize
from openvla.train.optim import apply_freeze, build_optimizer, lr_multiplier, param_groups

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_fixtures as tf

FIXTURE = Path(__file__).resolve().parent / "train_fixtures.py"


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(FIXTURE)]
    return subprocess.run([*cmd, *args], env=_env(), capture_output=True, text=True, timeout=240)


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FIXTURE), *args], env=_env(), capture_output=True, text=True,
                          timeout=240)  # fmt: skip


@pytest.fixture
def one_process():
    info = init_distributed("cpu")
    yield info
    shutdown_distributed()


def _final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """The gathered weights of the run's latest checkpoint, loaded into a plain (unwrapped) toy model."""
    model = tf.make_toy(seed=123)
    model.load_state_dict(ckpt.load_weights(ckpt.resolve_checkpoint(run_dir)), strict=True)
    return model.state_dict()


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=f"parameter {key} differs")


def test_fsdp_two_processes_match_one_process_and_checkpoint_loads_into_plain_model(tmp_path, one_process):
    steps = 4
    proc = _torchrun(2, "--run-dir", str(tmp_path / "fsdp2"), "--steps", str(steps), "--accum", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, summary1 = tf.run_toy(tmp_path / "fsdp1", steps, one_process, strategy="fsdp", accum=2)
    summary2 = torch.load(tmp_path / "fsdp2" / "summary.pt", weights_only=True)
    assert summary2["steps"] == steps
    assert math.isclose(summary2["final_loss"], summary1["final_loss"], rel_tol=1e-4, abs_tol=1e-6)
    assert math.isclose(summary2["final_grad_norm"], summary1["final_grad_norm"], rel_tol=1e-4)
    _assert_close(_final_state(tmp_path / "fsdp2"), _final_state(tmp_path / "fsdp1"))
    # the loss really moved: the comparison is not between two untrained models
    first = [float(line.split('"loss": ')[1].split(",")[0]) for line in (tmp_path / "fsdp1/history.jsonl").open()]
    assert first[-1] < first[0]


def test_ddp_two_processes_match_one_process(tmp_path, one_process):
    proc = _torchrun(2, "--run-dir", str(tmp_path / "ddp2"), "--steps", "3", "--strategy", "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tf.run_toy(tmp_path / "plain", 3, one_process, strategy="none")
    _assert_close(_final_state(tmp_path / "ddp2"), _final_state(tmp_path / "plain"))


def test_sigkilled_run_resumes_to_the_parameters_of_an_uninterrupted_run(tmp_path, one_process):
    """2-process FSDP run, rank 0 SIGKILLed after step 3 (torchrun takes the job down), resumed on 2 processes."""
    steps = 6
    run_dir = tmp_path / "killed"
    killed = _torchrun(2, "--run-dir", str(run_dir), "--steps", str(steps), "--kill-after-step", "3")
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-000002"
    resumed = _torchrun(2, "--run-dir", str(run_dir), "--steps", str(steps))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    tf.run_toy(tmp_path / "straight", steps, one_process, strategy="fsdp")
    _assert_close(_final_state(run_dir), _final_state(tmp_path / "straight"))
    # the resumed history has one row per step, none repeated
    rows = (run_dir / "history.jsonl").read_text().splitlines()
    assert [int(r.split('"step": ')[1].split(",")[0]) for r in rows] == list(range(1, steps + 1))


def test_kill_during_save_leaves_latest_naming_a_complete_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc = _python("--run-dir", str(run_dir), "--steps", "6", "--kill-during-save-step", "4", "--strategy", "none")
    assert proc.returncode == -9, proc.stderr[-3000:]
    latest = ckpt.resolve_checkpoint(run_dir)
    assert latest.name == "step-000002"
    assert (latest / ckpt.TRAINER_STATE).is_file() and (latest / "model.safetensors").is_file()
    assert not (run_dir / "checkpoints" / "step-000004").exists()  # the half-written one is invisible
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".step-000004")]
    assert leftovers, "expected the killed save's temporary directory"
    manager = ckpt.CheckpointManager(run_dir)
    manager.remove_stale_temporaries()
    assert [s for s, _ in manager.complete_checkpoints()] == [2]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000002"]


def test_checkpoint_rotation_keeps_last_and_latest(tmp_path):
    manager = ckpt.CheckpointManager(tmp_path, keep_last=2)

    def writer(directory: Path) -> None:
        torch.save({"step": 0}, directory / ckpt.TRAINER_STATE)

    for step in (1, 2, 3, 4):
        manager.save(step, writer)
    assert [s for s, _ in manager.complete_checkpoints()] == [3, 4]
    assert manager.latest() == tmp_path / "checkpoints" / "step-000004"
    with pytest.raises(ckpt.CheckpointError, match="trainer_state"):
        manager.save(5, lambda d: None)
    assert manager.latest().name == "step-000004"


def test_resolve_checkpoint_rejects_a_pointer_to_an_incomplete_directory(tmp_path):
    (tmp_path / "checkpoints" / "step-000001").mkdir(parents=True)
    (tmp_path / "latest").write_text("checkpoints/step-000001\n")
    with pytest.raises(ckpt.CheckpointError, match="not a complete checkpoint"):
        ckpt.resolve_checkpoint(tmp_path)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3)
    state = ckpt.capture_rng()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    torch.manual_seed(99)
    ckpt.restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    torch.testing.assert_close(got[0], expected[0])
    assert got[1:] == expected[1:]


def test_seed_rng_makes_every_checkpointed_generator_repeat():
    """Two trainings with the same seed store the same RNG states, so their checkpoints are byte-identical."""
    import random

    import numpy as np

    def draw_after(seed: int) -> tuple:
        ckpt.seed_rng(seed)
        state = ckpt.capture_rng()
        return state, (torch.rand(2).tolist(), float(np.random.rand()), random.random())

    (state_a, draws_a), (state_b, draws_b) = draw_after(11), draw_after(11)
    assert state_a["python"] == state_b["python"] and torch.equal(state_a["torch"], state_b["torch"])
    assert torch.equal(state_a["numpy"][1], state_b["numpy"][1]) and draws_a == draws_b
    assert draw_after(12)[1][1:] != draws_a[1:]  # Python's and NumPy's draws follow the seed


def test_fsdp_on_one_fp32_process_trains_the_plain_module_to_the_same_parameters(tmp_path, one_process):
    from openvla.train.strategy import effective_strategy

    assert effective_strategy("fsdp", one_process) == "none"
    assert effective_strategy("fsdp", one_process, "bf16") == "fsdp"  # FSDP's bf16 policy is not autocast's
    assert effective_strategy("ddp", one_process) == "ddp"
    two_ranks = dataclasses.replace(one_process, world_size=2, local_world_size=2)
    assert effective_strategy("fsdp", two_ranks) == "fsdp"
    tf.run_toy(tmp_path / "fsdp", 4, one_process, strategy="fsdp")
    tf.run_toy(tmp_path / "plain", 4, one_process, strategy="none")
    fsdp, plain = _final_state(tmp_path / "fsdp"), _final_state(tmp_path / "plain")
    assert fsdp.keys() == plain.keys()
    assert all(torch.equal(fsdp[k], plain[k]) for k in fsdp), "one-process FSDP and the plain module diverged"
    assert not torch.equal(fsdp["head.weight"], tf.make_toy().state_dict()["head.weight"])  # it trained


def test_no_weight_decay_on_biases_and_1d_parameters():
    model = tf.make_toy()
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    n_params = sum(1 for _ in model.parameters())
    assert len(decay["params"]) + len(no_decay["params"]) == n_params


def test_optimizer_is_multi_tensor_and_updates_exactly_as_the_per_tensor_loop():
    """``foreach`` is only faster: every trained model (and the committed lock) stays what the loop gave."""
    model = tf.make_toy()
    reference = tf.make_toy()
    reference.load_state_dict(model.state_dict())
    initial = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(model, 1e-3, 0.1)
    loop = torch.optim.AdamW(param_groups(reference, 0.1), lr=1e-3, weight_decay=0.1, foreach=False)
    assert all(group["foreach"] for group in optimizer.param_groups)
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=generator)
            q.grad = p.grad.clone()
        optimizer.step()
        loop.step()
    assert all(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), initial, strict=True))
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


def test_lr_schedules():
    assert [lr_multiplier(s, "constant", 10, 0) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert [lr_multiplier(s, "cosine", 10, 2) for s in (0, 1)] == [0.5, 1.0]
    assert lr_multiplier(2, "cosine", 10, 2) == pytest.approx(1.0)
    assert lr_multiplier(6, "cosine", 10, 2) == pytest.approx(0.5)
    assert lr_multiplier(10, "cosine", 10, 2) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        lr_multiplier(0, "linear", 10, 0)  # type: ignore[arg-type]


def test_freeze_modes():
    model = tf.make_toy()
    apply_freeze(model, "vision")
    assert not any(p.requires_grad for p in model.vision_backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model = tf.make_toy()
    apply_freeze(model, "vision_but_last")
    blocks = model.vision_backbone.blocks
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert not model.vision_backbone.embed.weight.requires_grad
    assert all(p.requires_grad for p in blocks[-1].parameters()) and all(
        p.requires_grad for p in blocks[-2].parameters()
    )
    with pytest.raises(ValueError, match="trainable"):
        model.requires_grad_(False)
        build_optimizer(model, 1e-3, 0.0)


def test_action_token_metrics_align_predictions_after_the_patches():
    # vocabulary 10, action tokens are ids > 5; 2 patch positions; labels: BOS, prompt, 2 actions, EOS
    labels = torch.tensor([[-100, -100, 7, 9, 2], [-100, -100, 8, 6, 2]])
    logits = torch.zeros(2, 2 + 5, 10)
    # prediction of text token i sits at logits[:, 2 + i - 1]
    for b, preds in enumerate([[0, 0, 7, 8, 2], [0, 0, 8, 6, 2]]):
        for i, tok in enumerate(preds[1:], start=1):
            logits[b, 2 + i - 1, tok] = 5.0
    sums = action_token_sums(logits, labels, action_token_begin_idx=5, decode=lambda ids: ids.astype("float32"),
                             dataset_names=["a", "b"])  # fmt: skip
    assert sums["count"] == 4 and sums["correct"] == 3
    assert sums["l1_sum"] == 1.0  # one token off by one id
    rates = summarize(sums)
    assert rates["action_accuracy"] == 0.75 and rates["l1"] == 0.25
    assert rates["a/action_accuracy"] == 0.5 and rates["b/action_accuracy"] == 1.0
    # the model computing only the last K = 4 positions (logits_to_keep) gives the same sums
    kept = action_token_sums(logits[:, -4:], labels, 5, decode=lambda ids: ids.astype("float32"), logits_to_keep=4)
    assert kept == {k: v for k, v in sums.items() if "/" not in k}


def test_pretrain_resume_fingerprint_follows_the_resolved_model_config():
    """runs/pretrain persists across `dvc repro`: a code change to a named config must not resume the old model."""
    from openvla.config import load_params
    from openvla.model import get_model_config
    from openvla.train.pretrain import resume_fingerprint

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    stats = {"libero_embedded": {"action": {"q01": [0.0]}}}
    config = get_model_config("tiny")
    before = resume_fingerprint(params, stats, config.to_dict())
    assert resume_fingerprint(params, stats, get_model_config("tiny").to_dict()) == before  # deterministic
    config.norm_stats = {"other": {}}  # statistics are fingerprinted on their own
    assert resume_fingerprint(params, stats, config.to_dict()) == before
    config.text_config.initializer_range = 0.02
    assert resume_fingerprint(params, stats, config.to_dict()) != before


def test_pretrain_resume_fingerprint_follows_the_rlds_content():
    """New images with the same actions keep the statistics: the RLDS content must still start a new run."""
    from openvla.config import load_params
    from openvla.train.pretrain import resume_fingerprint

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    stats = {"libero_embedded": {"action": {"q01": [0.0]}}}
    before = resume_fingerprint(params, stats, {}, {"libero_embedded": {"a.tfrecord": "10:aa"}})
    assert resume_fingerprint(params, stats, {}, {"libero_embedded": {"a.tfrecord": "10:aa"}}) == before
    assert resume_fingerprint(params, stats, {}, {"libero_embedded": {"a.tfrecord": "10:ab"}}) != before


def test_rlds_identity_hashes_small_datasets_whole_and_samples_the_ends_of_large_ones(tmp_path, monkeypatch):
    from openvla.data import identity

    shard, info = tmp_path / "x-train.tfrecord-00000-of-00001", tmp_path / "dataset_info.json"
    shard.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    info.write_text("{}")
    before = identity.directory_identity(tmp_path)
    assert set(before) == {shard.name, info.name} and before[shard.name].startswith("16384:")
    assert identity.directory_identity(tmp_path) == before
    middle = bytearray(shard.read_bytes())
    middle[8000] ^= 1  # one bit in the middle, the size unchanged
    shard.write_bytes(bytes(middle))
    changed = identity.directory_identity(tmp_path)
    assert changed[shard.name] != before[shard.name] and changed[info.name] == before[info.name]
    # over FULL_HASH_BYTES only the first and last SAMPLE_BYTES of each file count (and the size)
    monkeypatch.setattr(identity, "FULL_HASH_BYTES", 1024)
    monkeypatch.setattr(identity, "SAMPLE_BYTES", 1024)
    sampled = identity.directory_identity(tmp_path)
    middle[8001] ^= 1
    shard.write_bytes(bytes(middle))
    assert identity.directory_identity(tmp_path) == sampled  # the middle of a large file is not read
    middle[-1] ^= 1
    shard.write_bytes(bytes(middle))
    assert identity.directory_identity(tmp_path) != sampled


def test_finetune_base_identity_changes_when_the_base_is_rewritten_in_place(tmp_path):
    """A pretrain rerun with the same config rewrites runs/pretrain/latest: same path, size and fingerprint."""
    from openvla.train.finetune import base_identity

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 64)
    os.utime(weights, ns=(1_000_000_000, 1_000_000_000))
    before = base_identity(tmp_path)
    assert base_identity(tmp_path) == before  # a killed finetune on the same base resumes
    weights.write_bytes(b"b" * 64)  # same size, new content
    os.utime(weights, ns=(2_000_000_000, 2_000_000_000))
    assert base_identity(tmp_path) != before


def test_loader_and_training_modules_import_without_tensorflow():
    """TensorFlow loads where a function first needs it (``openvla.tf_import``), not at import of the loader."""
    code = (
        "import sys; import openvla.data.loader, openvla.data.dlataset, openvla.data.torch_dataset, "
        "openvla.train.data, openvla.train.pretrain, openvla.train.finetune; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_code_identity_hashes_the_python_sources_of_the_training_packages(tmp_path):
    from openvla.data import identity

    for package in identity.TRAINING_CODE:
        (tmp_path / package / "sub").mkdir(parents=True)
        (tmp_path / package / "sub" / "ops.py").write_text("SCALE = 0.9\n")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "libero.py").write_text("x = 1\n")
    before = identity.code_identity(tmp_path)
    assert sorted(before) == [f"{p}/sub/ops.py" for p in sorted(identity.TRAINING_CODE)]
    (tmp_path / "data" / "sub" / "ops.cpython-311.pyc").write_bytes(b"\0")  # caches do not count
    (tmp_path / "eval" / "libero.py").write_text("x = 2\n")  # nor code outside the training packages
    assert identity.code_identity(tmp_path) == before
    (tmp_path / "data" / "sub" / "ops.py").write_text("SCALE = 1.0\n")
    after = identity.code_identity(tmp_path)
    assert after != before and after["model/sub/ops.py"] == before["model/sub/ops.py"]
    installed = identity.code_identity()  # the openvla package itself
    assert {"train/pretrain.py", "data/identity.py", "model/vla.py"} <= set(installed)
    assert not any(k.startswith("eval/") for k in installed)


def test_a_finished_run_of_other_training_code_starts_over_and_a_killed_one_resumes(tmp_path, caplog):
    """DVC reruns pretrain when openvla/data, model or train changed: a finished run of the old code must not be
    found complete (the old model would be written again). A killed run resumes after a code fix, with a warning."""
    from openvla.train.checkpoint import CheckpointManager, read_meta
    from openvla.train.distributed import DistInfo
    from openvla.train.loop import Checkpointer

    info = DistInfo(0, 1, 0, 1, torch.device("cpu"), "gloo")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    manager = CheckpointManager(tmp_path / "run")

    def checkpointer(code: str | None) -> Checkpointer:
        return Checkpointer(manager, info, lambda d, state: None, "fp", code_fingerprint=code)

    checkpointer("old").save(50, model, optimizer, scheduler, {})
    assert read_meta(manager.path_for(50))["code"] == "old"
    assert checkpointer("old").find_resume(True, total_steps=100) == manager.path_for(50)
    with caplog.at_level("WARNING"):
        killed = checkpointer("new").find_resume(True, total_steps=100)
    assert killed == manager.path_for(50) and "training code changed" in caplog.text  # resumed, and said so
    checkpointer("old").save(100, model, optimizer, scheduler, {})
    assert checkpointer("old").find_resume(True, total_steps=100) == manager.path_for(100)  # same code: kept
    assert checkpointer(None).find_resume(True, total_steps=100) == manager.path_for(100)  # not asked: kept
    assert checkpointer("new").find_resume(True, total_steps=100) is None  # finished with other code: start over
    assert manager.latest() is None
    Checkpointer(manager, info, lambda d, state: None, "fp").save(100, model, optimizer, scheduler, {})
    assert checkpointer("new").find_resume(True, total_steps=100) is None  # finished without a code record: other
