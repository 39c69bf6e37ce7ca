"""Bridge / WidowX evaluation: offline metrics checked by hand, the live loop against a fake robot with a fake clock,
the WidowX adapter, held-out episodes equal to the training pipeline's frames, and the stage end to end (real
BridgeData debug set from ../shared when present; a tiny LIBERO-style dataset for the embedded default)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from openvla.eval.offline_metrics import action_metrics, dim_names
from openvla.eval.robot_client import FakeRobot, ManualClock, RobotClient, RobotError, WidowXRobot

V = 32000  # unpadded vocabulary of the tiny config's Mistral v1 tokenizer: action ids are V-256 .. V-1


@pytest.fixture(autouse=True)
def one_torch_thread():
    """On a shared, oversubscribed CPU, two spinning OpenMP threads make every small op ~50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_vla(stats: dict, seed: int = 0):
    """The tiny VLA, random, with its LM head limited to the action tokens so every greedy token is an action
    token that depends on image and prompt (a random head would mostly pick text tokens)."""
    from openvla.model.configs import get_model_config
    from openvla.model.vla import build_vla

    torch.manual_seed(seed)
    config = get_model_config("tiny")
    config.norm_stats = stats
    model = build_vla(config).eval()
    with torch.no_grad():
        head = model.language_model.lm_head.weight
        head[: V - 256].zero_()
        head[V:].zero_()
        head[V - 256 : V].mul_(20.0)
    return model


def tiny_predictor(stats: dict, seed: int = 0):
    from openvla.hf.processing import PrismaticProcessor
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.text_tokenizer import load_text_tokenizer
    from openvla.policy import Policy

    model = tiny_vla(stats, seed)
    return Policy(
        model,
        PrismaticProcessor(PrismaticImageProcessor.from_vla_config(model.config), load_text_tokenizer("mistral-v1")),
    )


def simple_stats(*keys: str) -> dict:
    """Statistics JSON in the OpenVLA layout; q01/q99 about Bridge's (metres and radians per step)."""
    q01, q99 = [-0.02] * 3 + [-0.2] * 3 + [0.0], [0.03] * 3 + [0.25] * 3 + [1.0]
    action = {"q01": q01, "q99": q99, "min": [-2.0] * 6 + [0.0], "max": [2.0] * 7, "mask": [True] * 6 + [False]}
    action |= {"mean": [0.0] * 7, "std": [1.0] * 7}
    out = {}
    for key in keys:
        dim = 7 if key == "bridge_orig" else 8  # proprio: Bridge EEF 6 + gripper 1; LIBERO EEF 6 + 2 fingers
        proprio = {k: [0.0] * dim for k in ("mean", "std", "max", "min", "q01", "q99")}
        out[key] = {"action": action, "proprio": proprio, "num_transitions": 100, "num_trajectories": 10}
    return out


@pytest.fixture(scope="module")
def predictor():
    """One tiny random predictor for the module (building and first use cost seconds on a shared CPU)."""
    return tiny_predictor(simple_stats("bridge_orig"), seed=1)


# --------------------------------------------------------------------------------------------------------------
# metrics by hand
# --------------------------------------------------------------------------------------------------------------
def test_action_metrics_match_hand_computed_values():
    true = np.array([[0.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    pred = np.array([[1.0, 1.0, 0.7], [2.0, 3.0, 0.2]])
    tokens_true = np.array([[5, 6, 7], [8, 9, 10]])
    tokens_pred = np.array([[5, 0, 7], [8, 9, 0]])
    m = action_metrics(pred, true, pred / 2, true / 2, tokens_pred, tokens_true)
    assert dim_names(3) == ["dim0", "dim1", "gripper"]
    assert m["frames"] == 2
    assert m["l1.dim0"] == pytest.approx(0.5) and m["l1.dim1"] == pytest.approx(1.5)
    assert m["l1.gripper"] == pytest.approx((0.3 + 0.2) / 2)
    assert m["l1"] == pytest.approx((0.5 + 1.5 + 0.25) / 3)
    assert m["l1_normalized"] == pytest.approx(m["l1"] / 2)
    assert m["gripper_accuracy"] == 1.0  # 0.7 vs 1 → open/open; 0.2 vs 0 → closed/closed
    assert m["token_accuracy"] == pytest.approx(4 / 6)
    assert m["token_accuracy.dim1"] == 0.5 and m["token_accuracy.gripper"] == 0.5
    assert m["token_all_correct"] == 0.0
    with pytest.raises(ValueError, match="pred has shape"):
        action_metrics(pred[:1], true, pred, true, tokens_pred, tokens_true)


# --------------------------------------------------------------------------------------------------------------
# live loop: fake robot, fake clock
# --------------------------------------------------------------------------------------------------------------
class RecordingPolicy:
    """Returns a new array per call (so identity checks are meaningful) and takes ``latency`` simulated seconds."""

    def __init__(self, clock: ManualClock, latency: float) -> None:
        self.clock, self.latency, self.outputs, self.seen, self.queries = clock, latency, [], [], 0

    def reset(self, session: str) -> None:
        self.seen.clear()

    def act(self, observation: dict, *, session: str) -> np.ndarray:
        self.clock.advance(self.latency)
        self.seen.append((observation["image"], observation["instruction"]))
        action = np.full(7, len(self.outputs) * 0.001, dtype=np.float32)
        self.outputs.append(action)
        self.queries += 1
        return action


def test_live_loop_runs_60_steps_at_5hz_and_passes_actions_unchanged():
    from openvla.eval.bridge import run_live_episode

    clock = ManualClock(start=100.0)
    robot = FakeRobot(image_size=64, clock=clock, step_latency=0.01, observation_latency=0.02)
    policy = RecordingPolicy(clock, latency=0.05)
    result = run_live_episode(policy, robot, "put the spoon on the towel", steps=60, control_hz=5.0, clock=clock)

    assert isinstance(robot, RobotClient) and robot.resets == 1
    assert len(robot.actions) == len(result.actions) == 60
    assert all(sent is made for sent, made in zip(robot.actions, policy.outputs, strict=True))  # the same objects
    assert all(seen[0] is image for seen, image in zip(policy.seen, robot.images, strict=True))
    assert {instruction for _, instruction in policy.seen} == {"put the spoon on the towel"}
    # observe 0.02 + infer 0.05 + send 0.01 = 0.08 s of work, then sleep out the 0.2 s period
    np.testing.assert_allclose(clock.sleeps, [0.12] * 60, atol=1e-9)
    np.testing.assert_allclose(result.periods, [0.2] * 59, atol=1e-9)
    np.testing.assert_allclose(result.inference_seconds, [0.05] * 60, atol=1e-9)
    assert clock.now == pytest.approx(100.0 + 60 * 0.2)
    summary = result.summary(5.0)
    assert summary["steps"] == 60 and summary["overruns"] == 0
    assert summary["period_mean_s"] == pytest.approx(0.2)


def test_live_loop_does_not_sleep_or_catch_up_after_an_overrun():
    from openvla.eval.bridge import run_live_episode

    clock = ManualClock()
    latencies = iter([0.05, 0.35, 0.05, 0.05])

    class Slow(RecordingPolicy):
        def act(self, observation: dict, *, session: str) -> np.ndarray:
            clock.advance(next(latencies))
            return np.zeros(7, np.float32)

    policy = Slow(clock, 0.0)
    result = run_live_episode(policy, FakeRobot(image_size=8), "x", steps=4, control_hz=5.0, clock=clock)
    assert result.overruns == 1
    np.testing.assert_allclose(clock.sleeps, [0.15, 0.15, 0.15], atol=1e-9)  # no sleep after the slow step
    np.testing.assert_allclose(result.periods, [0.2, 0.35, 0.2], atol=1e-9)  # the schedule restarts, no burst
    with pytest.raises(ValueError, match="control_hz"):
        run_live_episode(policy, FakeRobot(), "x", steps=1, control_hz=0.0, clock=clock)


def test_live_policy_sends_the_models_action_on_the_resized_frame(predictor):
    from openvla.data.image_ops import resize_image
    from openvla.eval.bridge import run_live_episode
    from openvla.policy import Policy

    robot = FakeRobot(image_size=256, seed=3)
    clock = ManualClock()
    policy = Policy(predictor.model, predictor.processor, unnorm_key="bridge_orig")
    result = run_live_episode(policy, robot, "pick up the spoon", steps=3, control_hz=5.0, clock=clock)
    assert len(robot.actions) == 3
    for image, sent in zip(robot.images, robot.actions, strict=True):
        frame = resize_image(image, predictor.image_size)  # training resize; no crop: trained without augmentation
        inputs = predictor.inputs([frame], ["pick up the spoon"])
        expected = predictor.model.predict_action(**inputs, unnorm_key="bridge_orig")
        np.testing.assert_array_equal(sent, expected)
    assert len(result.actions) == 3
    with pytest.raises(Exception, match="available keys"):
        Policy(predictor.model, predictor.processor, unnorm_key="libero_spatial_no_noops")


def test_evaluate_bridge_live_mode_records_the_sent_actions(predictor, tmp_path):
    import dataclasses

    from openvla.config import EvalBridgeConfig
    from openvla.eval.bridge import evaluate_bridge

    cfg = EvalBridgeConfig(mode="live", unnorm_key="bridge_orig", instruction="put the spoon on the towel", steps=4)
    clock = ManualClock()
    robot = FakeRobot(image_size=128, clock=clock)
    summary = evaluate_bridge(
        cfg, model_dir="unused", data_dir="unused", plots_dir=tmp_path, robot=robot, clock=clock, policy=predictor
    )
    assert summary["steps"] == 4 and summary["control_hz"] == 5.0 and summary["overruns"] == 0
    with open(tmp_path / "live_actions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose([[float(r[n]) for n in dim_names(7)] for r in rows], np.stack(robot.actions), rtol=1e-5)
    with pytest.raises(ValueError, match="instruction"):
        evaluate_bridge(
            dataclasses.replace(cfg, instruction=""),
            model_dir="-",
            data_dir="-",
            plots_dir=tmp_path,
            policy=predictor,
        )


# --------------------------------------------------------------------------------------------------------------
# WidowX adapter
# --------------------------------------------------------------------------------------------------------------
class FakeWidowXClient:
    """Speaks the bridge_data_robot WidowXClient API: init/reset/get_observation/step_action, status 1 = success."""

    def __init__(self, size: int, none_first: int = 0) -> None:
        self.size, self.none_left, self.calls = size, none_first, []
        rng = np.random.default_rng(0)
        self.hwc = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)

    def init(self, env_params, image_size=256):
        self.calls.append(("init", image_size, env_params["move_duration"]))
        return 1

    def reset(self):
        self.calls.append(("reset",))
        return 1

    def get_observation(self):
        if self.none_left:
            self.none_left -= 1
            return None
        chw = (self.hwc.astype(np.float32) / 255.0).transpose(2, 0, 1).reshape(-1)  # the server's flat CHW floats
        return {"image": chw, "state": np.arange(7.0), "full_image": self.hwc}

    def step_action(self, action, blocking=False):
        self.calls.append(("step_action", action, blocking))
        return 1


def test_widowx_adapter_converts_images_and_steps_without_blocking():
    client = FakeWidowXClient(size=16, none_first=2)
    clock = ManualClock()
    robot = WidowXRobot(image_size=16, client=client, clock=clock)
    assert client.calls[0] == ("init", 16, 0.2)
    robot.reset()
    obs = robot.get_observation()
    np.testing.assert_array_equal(obs["image"], client.hwc)
    np.testing.assert_array_equal(obs["state"], np.arange(7.0, dtype=np.float32))
    assert clock.sleeps == [0.1, 0.1]  # waited for the cameras
    action = np.arange(7, dtype=np.float32)
    robot.step(action)
    assert client.calls[-1][0] == "step_action" and client.calls[-1][1] is action and client.calls[-1][2] is False


def test_widowx_adapter_without_the_client_package_says_what_to_install():
    pytest.importorskip("pytest")
    try:
        import widowx_envs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("widowx_envs is installed here")
    with pytest.raises(RobotError, match="widowx_envs"):
        WidowXRobot("127.0.0.1", 5556)


# --------------------------------------------------------------------------------------------------------------
# real BridgeData (../shared)
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bridge_stats() -> dict:
    return simple_stats("bridge_orig")


def test_held_out_episodes_are_the_training_pipelines_frames(bridge_data_dir, bridge_stats):
    """Same images (decode + lanczos resize) and normalized actions as make_dataset(train=False), in order."""
    from openvla.actions import normalize
    from openvla.data import make_dataset
    from openvla.eval.bridge import iter_episodes

    episodes = list(
        iter_episodes(
            bridge_data_dir, "bridge_orig", bridge_stats["bridge_orig"]["action"], image_size=32, max_episodes=3
        )
    )
    assert [len(e.actions) for e in episodes] == [8, 8, 8]  # 10 steps − step 0 − the last (relabelled from states)
    assert all(e.instruction for e in episodes)
    frames = make_dataset(
        bridge_data_dir,
        "bridge_orig",
        statistics=bridge_stats,
        train=False,
        image_size=32,
        shuffle_buffer=1,
        image_augmentation=False,
        seed=0,
        split="val",
        num_parallel_calls=1,
        num_parallel_reads=1,
    ).take(24)
    frames = list(frames.as_numpy_iterator())
    images = np.concatenate([e.images for e in episodes])
    normalized = np.concatenate([e.actions_normalized for e in episodes])
    np.testing.assert_array_equal(images, np.stack([f["observation"]["image_primary"][0] for f in frames]))
    np.testing.assert_array_equal(normalized, np.stack([f["action"][0, 0] for f in frames]))
    raw = np.concatenate([e.actions for e in episodes])
    np.testing.assert_allclose(normalize(raw, bridge_stats["bridge_orig"]["action"]), normalized, atol=1e-5)
    assert set(np.unique(raw[:, -1])) <= {0.0, 1.0}  # bridge_orig binarizes the gripper


def test_offline_metrics_on_real_bridge_match_an_independent_computation(bridge_data_dir, predictor, tmp_path):
    from openvla.actions import unnormalize
    from openvla.eval.bridge import evaluate_offline, iter_episodes

    stats = predictor.model.config.norm_stats["bridge_orig"]["action"]
    episodes = list(
        iter_episodes(bridge_data_dir, "bridge_orig", stats, image_size=predictor.image_size, max_episodes=3)
    )
    summary, results = evaluate_offline(
        predictor, episodes, unnorm_key="bridge_orig", batch_size=5, plot_episodes=2, plots_dir=tmp_path
    )
    assert summary["episodes"] == 3 and summary["frames"] == 24

    # Predictions again, independently: one predict_action call per episode (other batch boundaries).
    pred, pred_norm, pred_tok = [], [], []
    for episode in episodes:
        inputs = predictor.inputs(list(episode.images), [episode.instruction] * len(episode.images))
        actions = predictor.model.predict_action(**inputs, unnorm_key="bridge_orig")
        tokens = predictor.model.generate_action_tokens(
            inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"], num_tokens=7
        ).numpy()
        assert ((tokens >= V - 256) & (tokens < V)).all()
        bins = np.linspace(-1, 1, 256)
        centers = (bins[:-1] + bins[1:]) / 2
        normalized = centers[np.clip(V - tokens - 1, 0, 254)]  # DESIGN §4 decode, by hand
        np.testing.assert_allclose(unnormalize(normalized, stats), actions, atol=1e-6)
        pred.append(actions), pred_norm.append(normalized), pred_tok.append(tokens)
    pred, pred_norm, pred_tok = map(np.concatenate, (pred, pred_norm, pred_tok))
    true = np.concatenate([e.actions for e in episodes]).astype(np.float64)
    true_norm = np.concatenate([e.actions_normalized for e in episodes]).astype(np.float64)
    true_tok = V - np.digitize(np.clip(true_norm, -1, 1), np.linspace(-1, 1, 256))  # DESIGN §4 encode, by hand

    np.testing.assert_allclose(np.concatenate([r.stacked("pred") for r in results]), pred, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([r.stacked("pred_tokens") for r in results]), pred_tok)
    names = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    for d, name in enumerate(names):
        assert summary[f"l1.{name}"] == pytest.approx(np.abs(pred[:, d] - true[:, d]).mean(), abs=1e-6)
        assert summary[f"l1_normalized.{name}"] == pytest.approx(
            np.abs(pred_norm[:, d] - true_norm[:, d]).mean(), abs=1e-6
        )
        assert summary[f"token_accuracy.{name}"] == pytest.approx((pred_tok[:, d] == true_tok[:, d]).mean())
    assert summary["l1"] == pytest.approx(np.abs(pred - true).mean(), abs=1e-6)
    assert summary["token_accuracy"] == pytest.approx((pred_tok == true_tok).mean())
    assert summary["gripper_accuracy"] == pytest.approx(((pred[:, 6] > 0.5) == (true[:, 6] > 0.5)).mean())

    with open(tmp_path / "trajectories.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and [int(r["episode"]) for r in rows] == [0] * 8 + [1] * 8
    np.testing.assert_allclose([float(r["x_pred"]) for r in rows], pred[:16, 0], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose([float(r["gripper_true"]) for r in rows], true[:16, 6])
    with open(tmp_path / "l1_per_dim.csv") as f:
        assert [r["dim"] for r in csv.DictReader(f)] == names
    with open(tmp_path / "episodes.csv") as f:
        assert [int(r["frames"]) for r in csv.DictReader(f)] == [8, 8, 8]


# --------------------------------------------------------------------------------------------------------------
# the stage, end to end
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory as the pipeline makes it (the HF export; a plain save_pretrained checkpoint when the export
    fails, which the stage must load too), with statistics for both datasets the stage tests evaluate."""
    directory = tmp_path_factory.mktemp("model")
    stats = simple_stats("bridge_orig", "libero_embedded")
    checkpoint = directory / "checkpoint"
    tiny_vla(stats, seed=2).save_pretrained(str(checkpoint))
    (checkpoint / "dataset_statistics.json").write_text(json.dumps(stats))
    try:
        from openvla.hf.export import export_hf

        export_hf(checkpoint, directory / "model-hf", tokenizer="mistral-v1")
        return directory / "model-hf"
    except Exception:  # the export is another area's; the stage must work on a checkpoint too
        return checkpoint


@pytest.fixture(scope="module")
def embedded_rlds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-episode ``libero_embedded`` RLDS without a val split (convert.val_fraction 0, the embedded default)."""
    from data_fixtures import demo_actions, write_libero_hdf5

    from openvla.config import ConvertConfig
    from openvla.data.convert import convert_dataset

    root = tmp_path_factory.mktemp("embedded")
    demos = [{"actions": demo_actions(3, seed=i), "offset": 3 * i} for i in range(40)]
    write_libero_hdf5(root / "raw" / "pick_demo.hdf5", "pick up the black bowl", demos, size=16)
    convert_dataset(root / "raw", root / "rlds", ConvertConfig(dataset_name="libero_embedded", drop_noops=False))
    return root / "rlds"


def test_policy_uses_the_fitted_action_tokenizer_saved_with_the_model(model_dir, tmp_path):
    import shutil

    from openvla.actions import QuantileActionTokenizer, save_action_tokenizer
    from openvla.policy import Policy

    def load_predictor(path, **kwargs):
        return Policy.from_pretrained(path, **kwargs)

    assert type(load_predictor(model_dir, device="cpu", dtype="float32").action_tokenizer).__name__ == "ActionTokenizer"
    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    fitted = QuantileActionTokenizer.fit(np.random.default_rng(0).normal(0, 0.3, (500, 7)), vocab_size=V)
    save_action_tokenizer(fitted, copy / "action_tokenizer")
    loaded = load_predictor(copy, device="cpu", dtype="float32").action_tokenizer
    assert isinstance(loaded, QuantileActionTokenizer)
    np.testing.assert_array_equal(loaded.bins, fitted.bins)


def _params(path: Path, **eval_bridge: object) -> Path:
    import yaml

    repo = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((repo / "params.yaml").read_text())
    data["eval_bridge"].update(eval_bridge)
    path.write_text(yaml.safe_dump(data))
    return path


def _run_stage(tmp_path: Path, model_dir: Path, data_dir: Path, params: Path) -> dict:
    from typer.testing import CliRunner

    from stages.cli import app

    metrics = tmp_path / "metrics" / "bridge.json"
    args = ["eval-bridge", "--model-dir", str(model_dir), "--data-dir", str(data_dir), "--metrics", str(metrics)]
    args += ["--plots-dir", str(tmp_path / "plots" / "bridge"), "--params", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(metrics.read_text())


def test_stage_on_real_bridge_writes_metrics_and_plots(bridge_data_dir, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENVLA_TRACKING", "off")  # MLflow is checked by the embedded-default test
    params = _params(
        tmp_path / "params.yaml", dataset_name="bridge_orig", unnorm_key="bridge_orig", max_episodes=2, dtype="float32"
    )
    summary = _run_stage(tmp_path, model_dir, bridge_data_dir, params)
    assert summary["episodes"] == 2 and summary["frames"] == 16
    assert 0.0 <= summary["token_accuracy"] <= 1.0 and summary["l1"] > 0
    assert sorted(p.name for p in (tmp_path / "plots" / "bridge").iterdir()) == [
        "episodes.csv",
        "l1_per_dim.csv",
        "trajectories.csv",
    ]


def test_stage_embedded_default_evaluates_the_last_5_percent_of_train(
    embedded_rlds, model_dir, tmp_path, isolated_mlflow
):
    """No val split: the default params evaluate libero_embedded's last 5% of train, and log it all to MLflow."""
    summary = _run_stage(tmp_path, model_dir, embedded_rlds, _params(tmp_path / "params.yaml", dtype="float32"))
    assert summary["episodes"] == 2 and summary["frames"] == 6  # 40 episodes → train[95%:] = the last two
    with open(tmp_path / "plots" / "bridge" / "trajectories.csv") as f:
        rows = list(csv.DictReader(f))
    # The last two episodes of the train split in the builder's order (TFDS orders examples by key hash, not by
    # demo), read straight with TFDS; LIBERO's gripper −1 open / +1 close becomes 1 − clip(g, 0, 1).
    from openvla.tf_import import import_tfds

    builder = import_tfds().builder_from_directory(str(embedded_rlds / "libero_embedded" / "1.0.0"))
    episodes = [
        [step["action"] for step in ep["steps"].as_numpy_iterator()] for ep in builder.as_dataset(split="train")
    ]
    assert len(episodes) == 40
    last = np.concatenate([np.stack(episodes[-2]), np.stack(episodes[-1])])
    np.testing.assert_allclose([float(r["x_true"]) for r in rows], last[:, 0], rtol=1e-5)
    np.testing.assert_allclose([float(r["gripper_true"]) for r in rows], 1.0 - np.clip(last[:, 6], 0, 1))

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{isolated_mlflow / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["openvla-embedded"], output_format="list")
    (run,) = [r for r in runs if r.data.tags.get("stage") == "eval-bridge"]
    assert run.data.metrics["l1"] == pytest.approx(summary["l1"])
    assert run.data.metrics["token_accuracy"] == pytest.approx(summary["token_accuracy"])
    assert run.data.params["unnorm_key"] == "libero_embedded" and run.data.params["split"] == "val"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "episode.l1")
    assert [m.step for m in history] == [0, 1]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots/bridge")}
    assert "plots/bridge/trajectories.csv" in artifacts


# --------------------------------------------------------------------------------------------------------------
# OpenVLA-OFT options: action chunks, the L1 head, proprio (offline and live)
# --------------------------------------------------------------------------------------------------------------
CHUNK = 4
EMBEDDED = "libero_embedded"


def oft_stats() -> dict:
    """``libero_embedded`` statistics: 7-D actions (gripper unnormalized) and the 8-D proprio of the fixture demos
    (demo i, step t: EEF (0.01·t + i, 0.1·(i+1) ×5), fingers (0.001·t, −0.001·t))."""
    action = {"q01": [-1.0] * 6 + [0.0], "q99": [1.0] * 7, "min": [-1.0] * 6 + [0.0], "max": [1.0] * 7}
    action |= {"mask": [True] * 6 + [False], "mean": [0.0] * 7, "std": [0.5] * 7}
    low, high = [0.0] * 6 + [-0.01] * 2, [40.0] + [4.0] * 5 + [0.01] * 2
    proprio = {"q01": low, "q99": high, "min": low, "max": high, "mean": [0.0] * 8, "std": [1.0] * 8}
    return {EMBEDDED: {"action": action, "proprio": proprio, "num_transitions": 120, "num_trajectories": 40}}


def oft_predictor(head: str = "l1", parallel: bool = True, chunk: int = CHUNK, proprio: bool = True, seed: int = 0):
    """A tiny random model with OFT options (tokens head: LM head limited to the action tokens, as ``tiny_vla``)."""
    from openvla.hf.processing import PrismaticProcessor
    from openvla.model import build_vla, get_model_config, set_action_options
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.text_tokenizer import load_text_tokenizer
    from openvla.policy import Policy

    stats = oft_stats()
    config = get_model_config("tiny")
    set_action_options(
        config, action_head=head, parallel_decoding=parallel, chunk=chunk, use_proprio=proprio, statistics=stats
    )
    config.norm_stats = stats
    torch.manual_seed(seed)
    model = build_vla(config, "sdpa").eval()
    if head == "tokens":
        with torch.no_grad():
            weight = model.language_model.lm_head.weight
            weight[: V - 256].zero_()
            weight[V:].zero_()
            weight[V - 256 : V].mul_(20.0)
    return Policy(
        model,
        PrismaticProcessor(PrismaticImageProcessor.from_vla_config(model.config), load_text_tokenizer("mistral-v1")),
    )


@pytest.fixture(scope="module")
def l1_predictor():
    """K = 4, L1 head (parallel decoding), proprio: the OpenVLA-OFT recipe, tiny and random."""
    return oft_predictor()


def hand_tokens(normalized: np.ndarray) -> np.ndarray:
    """DESIGN §4 encode, by hand (uniform bins)."""
    return V - np.digitize(np.clip(normalized, -1, 1), np.linspace(-1, 1, 256))


def frames(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("variant", ["l1", "tokens-parallel", "tokens-autoregressive"])
def test_chunk_predictions_are_the_models_chunk_and_its_first_action(variant, l1_predictor):
    from openvla.actions import unnormalize

    if variant == "l1":
        predictor = l1_predictor
    else:  # K = 2 keeps the 14 autoregressive steps cheap; the autoregressive model has no proprio
        predictor = oft_predictor("tokens", parallel=variant == "tokens-parallel", chunk=2,
                                  proprio=variant != "tokens-autoregressive", seed=4)  # fmt: skip
    model, k = predictor.model, predictor.chunk_size
    images = frames(3, predictor.image_size, seed=1)
    texts = ["pick up the black bowl", "open the drawer", "pick up the black bowl"]
    states = [np.linspace(0, 1, 8) * (i + 1) for i in range(3)]
    proprios = states if predictor.uses_proprio else None
    prediction = predictor.predict(images, texts, proprios=proprios, unnorm_key=EMBEDDED)

    inputs = predictor.inputs(images, texts)
    proprio = model.normalize_proprio(np.stack(states), EMBEDDED) if predictor.uses_proprio else None
    expected = model.predict_normalized_chunk(**inputs, proprio=proprio)
    assert prediction.chunk.shape == expected.shape == (3, k, 7)
    np.testing.assert_array_equal(prediction.chunk, expected)
    np.testing.assert_array_equal(prediction.normalized, expected[:, 0])
    stats = oft_stats()[EMBEDDED]["action"]
    np.testing.assert_allclose(prediction.chunk_actions, unnormalize(expected, stats), atol=1e-6)
    np.testing.assert_allclose(prediction.actions, unnormalize(expected[:, 0], stats), atol=1e-6)
    if variant == "l1":  # tokens = the bins of the regressed values
        assert predictor.action_head == "l1"
        np.testing.assert_array_equal(prediction.tokens, hand_tokens(expected[:, 0]))
        for i in range(3):  # the public API, one prompt at a time: (K, D) unnormalized
            row = inputs["attention_mask"][i].bool()
            one = model.predict_action(
                inputs["input_ids"][i : i + 1, row], inputs["pixel_values"][i : i + 1], unnorm_key=EMBEDDED,
                proprio=states[i],
            )  # fmt: skip
            np.testing.assert_allclose(one, prediction.chunk_actions[i], atol=1e-5)
    elif variant == "tokens-parallel":  # the greedy ids of the K·D slots
        logits = model.parallel_forward(**inputs, proprio=proprio).logits
        np.testing.assert_array_equal(prediction.tokens, logits.argmax(-1).numpy()[:, :7])
    else:  # the first 7 of the K·D generated ids
        generated = model.generate_action_tokens(
            inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"], num_tokens=k * 7
        ).numpy()
        np.testing.assert_array_equal(prediction.tokens, generated[:, :7])
    assert ((prediction.tokens >= V - 256) & (prediction.tokens < V)).all()
    if predictor.uses_proprio:
        with pytest.raises(ValueError, match="proprio"):
            predictor.predict(images, texts, unnorm_key=EMBEDDED)


def test_chunk_targets_and_chunk_l1_match_a_hand_built_example():
    from openvla.eval.offline_metrics import chunk_l1, chunk_targets

    actions = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    targets = chunk_targets(actions, 3)
    expected = np.array(
        [
            [[0, 10], [1, 11], [2, 12]],
            [[1, 11], [2, 12], [2, 12]],  # clamped at the last step
            [[2, 12], [2, 12], [2, 12]],
        ],
        dtype=float,
    )
    np.testing.assert_array_equal(targets, expected)
    np.testing.assert_array_equal(chunk_targets(actions, 1), actions[:, None])
    pred = np.zeros((3, 3, 2))
    pred[0, 0] = [1.0, 10.0]  # frame 0's current step: errors 1 and 0 (target [0, 10])
    m = chunk_l1(pred, targets)
    # errors summed per chunk step over 3 frames × 2 dims: step0 (1+0)+(1+11)+(2+12) = 27,
    # step1 (1+11)+(2+12)+(2+12) = 40, step2 3·(2+12) = 42
    assert m["chunk_l1_normalized.step0"] == pytest.approx(27 / 6)
    assert m["chunk_l1_normalized.step1"] == pytest.approx(40 / 6)
    assert m["chunk_l1_normalized.step2"] == pytest.approx(42 / 6)
    assert m["chunk_l1_normalized"] == pytest.approx((27 + 40 + 42) / 18)
    with pytest.raises(ValueError, match="pred_chunks has shape"):
        chunk_l1(pred[:, :2], targets)


def test_offline_l1_chunk_proprio_model_matches_a_manual_computation(embedded_rlds, l1_predictor, tmp_path):
    """Held-out episodes carry their raw proprio; the metrics are those of predict_normalized_chunk's first action,
    and chunk_l1_normalized compares whole chunks with the recorded (clamped) future actions."""
    from openvla.actions import unnormalize
    from openvla.eval.bridge import evaluate_offline, iter_episodes

    predictor, model = l1_predictor, l1_predictor.model
    stats = oft_stats()[EMBEDDED]["action"]
    episodes = list(iter_episodes(embedded_rlds, EMBEDDED, stats, image_size=predictor.image_size))
    assert [len(e.actions) for e in episodes] == [3, 3]  # the last 5% of train: two 3-step demos
    t = np.arange(3.0)
    for episode in episodes:  # the fixture's states, raw (not normalized)
        i = round(float(episode.proprio[0, 0]))
        expected = np.column_stack([0.01 * t + i, *[np.full(3, 0.1 * (i + 1))] * 5, 0.001 * t, -0.001 * t])
        np.testing.assert_allclose(episode.proprio, expected, atol=1e-6)

    summary, results = evaluate_offline(
        predictor, episodes, unnorm_key=EMBEDDED, batch_size=16, plot_episodes=1, plots_dir=tmp_path
    )

    # by hand: the same single batch of the 6 frames through predict_normalized_chunk
    images = [image for e in episodes for image in e.images]
    inputs = predictor.inputs(images, [e.instruction for e in episodes for _ in e.images])
    raw_proprio = np.concatenate([e.proprio for e in episodes])
    chunk = model.predict_normalized_chunk(**inputs, proprio=model.normalize_proprio(raw_proprio, EMBEDDED))
    assert chunk.shape == (6, CHUNK, 7)
    other = model.predict_normalized_chunk(**inputs, proprio=model.normalize_proprio(raw_proprio * 0, EMBEDDED))
    assert np.abs(other - chunk).max() > 1e-4  # the proprio state matters, so the equalities below test it
    np.testing.assert_array_equal(np.concatenate([r.stacked("pred_chunk") for r in results]), chunk)
    first = chunk[:, 0].astype(np.float64)
    pred = np.asarray(unnormalize(first, stats), dtype=np.float64)
    true = np.concatenate([e.actions for e in episodes]).astype(np.float64)
    true_norm = np.concatenate([e.actions_normalized for e in episodes]).astype(np.float64)
    pred_tok, true_tok = hand_tokens(first), hand_tokens(true_norm)

    assert summary["episodes"] == 2 and summary["frames"] == 6
    assert summary["action_head"] == "l1" and summary["action_chunk"] == CHUNK
    assert summary["l1"] == pytest.approx(np.abs(pred - true).mean(), abs=1e-6)
    assert summary["l1_normalized"] == pytest.approx(np.abs(first - true_norm).mean(), abs=1e-6)
    for d, name in enumerate(dim_names(7)):
        assert summary[f"l1.{name}"] == pytest.approx(np.abs(pred[:, d] - true[:, d]).mean(), abs=1e-6)
        assert summary[f"token_accuracy.{name}"] == pytest.approx((pred_tok[:, d] == true_tok[:, d]).mean())
    assert summary["token_accuracy"] == pytest.approx((pred_tok == true_tok).mean())
    assert summary["gripper_accuracy"] == pytest.approx(((pred[:, 6] > 0.5) == (true[:, 6] > 0.5)).mean())

    # whole chunks vs the recorded actions t … t+3, clamped at each episode's last step, element by element
    errors = np.zeros((6, CHUNK, 7))
    row = 0
    for episode in episodes:
        steps = len(episode.actions)
        for step in range(steps):
            for k in range(CHUNK):
                errors[row, k] = np.abs(chunk[row, k] - episode.actions_normalized[min(step + k, steps - 1)])
            row += 1
    assert summary["chunk_l1_normalized"] == pytest.approx(errors.mean(), abs=1e-6)
    for k in range(CHUNK):
        assert summary[f"chunk_l1_normalized.step{k}"] == pytest.approx(errors[:, k].mean(), abs=1e-6)
    assert summary["chunk_l1_normalized.step0"] == pytest.approx(summary["l1_normalized"], abs=1e-6)
    with open(tmp_path / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_allclose(
        [float(r["chunk_l1_normalized"]) for r in rows], [errors[:3].mean(), errors[3:].mean()], rtol=1e-5
    )
    json.dumps(summary)  # metrics/bridge.json


class ProprioRobot(FakeRobot):
    """``FakeRobot`` with LIBERO's 8-D state (EEF 6 + 2 fingers), recording the state of every observation."""

    def reset(self) -> None:
        super().reset()
        self.state = np.array([1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.004, -0.004], dtype=np.float32)
        self.states: list[np.ndarray] = []

    def get_observation(self) -> dict[str, np.ndarray]:
        obs = super().get_observation()
        self.states.append(obs["state"])
        return obs


def expected_chunk(predictor, image: np.ndarray, instruction: str, state: np.ndarray) -> np.ndarray:
    """The (K, D) chunk ``predict_action`` gives for the resized frame and the raw state."""
    from openvla.data.image_ops import resize_image

    inputs = predictor.inputs([resize_image(image, predictor.image_size)], [instruction])
    return predictor.model.predict_action(**inputs, unnorm_key=EMBEDDED, proprio=state)


def test_live_open_loop_queries_the_model_once_per_chunk_and_sends_its_actions(l1_predictor, monkeypatch):
    from openvla.eval.bridge import run_live_episode
    from openvla.policy import Policy

    model = l1_predictor.model
    calls = []
    original = model.predict_normalized_chunk

    def counted(*args, **kwargs):
        calls.append(kwargs.get("proprio"))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "predict_normalized_chunk", counted)
    robot = ProprioRobot(image_size=48, seed=5)
    clock = ManualClock()
    policy = Policy(l1_predictor.model, l1_predictor.processor, unnorm_key=EMBEDDED, execution="open_loop")
    assert policy.chunk_size == CHUNK and policy.uses_proprio
    result = run_live_episode(policy, robot, "pick up the black bowl", steps=10, control_hz=5.0, clock=clock)
    assert len(calls) == 3 and result.queries == 3  # steps 0, 4 and 8
    assert result.execution == "open_loop" and len(robot.actions) == len(result.actions) == 10
    assert all(p is not None and p.shape == (1, 8) for p in calls)  # the normalized state went to the model
    monkeypatch.undo()
    for query in (0, 4, 8):
        chunk = expected_chunk(l1_predictor, robot.images[query], "pick up the black bowl", robot.states[query])
        for j in range(min(CHUNK, 10 - query)):
            np.testing.assert_allclose(robot.actions[query + j], chunk[j], atol=1e-5)
    assert not np.allclose(robot.states[4], robot.states[0])  # the robot moved: each query saw a new state
    assert result.summary(5.0)["queries"] == 3


def test_evaluate_bridge_live_chunked_model_defaults_to_temporal_ensembling(l1_predictor, tmp_path):
    from openvla.config import EvalBridgeConfig
    from openvla.eval.bridge import evaluate_bridge
    from openvla.policy.chunking import ensemble_weights

    cfg = EvalBridgeConfig(mode="live", unnorm_key=EMBEDDED, instruction="open the drawer", steps=3)
    clock = ManualClock()
    robot = ProprioRobot(image_size=48, seed=6, clock=clock)

    summary = evaluate_bridge(
        cfg, model_dir="unused", data_dir="unused", plots_dir=tmp_path, robot=robot, clock=clock, policy=l1_predictor
    )
    assert summary["queries"] == 3 and summary["steps"] == 3  # ensembling queries every step
    assert summary["execution"] == "ensemble" and summary["action_chunk"] == CHUNK
    observed = zip(robot.images, robot.states, strict=True)
    chunks = [expected_chunk(l1_predictor, image, "open the drawer", state) for image, state in observed]
    for step in range(3):  # step s: the predictions for s of the chunks queried at 0 … s, oldest first
        preds = np.stack([chunks[q][step - q] for q in range(step + 1)])
        np.testing.assert_allclose(robot.actions[step], ensemble_weights(step + 1, 0.01) @ preds, atol=1e-5)
    with open(tmp_path / "live_actions.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
