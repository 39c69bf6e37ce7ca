"""LIBERO evaluation: OpenVLA's image pipeline (equal to training's), gripper mapping, chunk execution, Wilson
intervals, the policies, and short closed-loop episodes in the real simulator (``sim``)."""

from __future__ import annotations

import csv
import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from sim_fixtures import SIM_RESOLUTION, shared_spatial_env

from openvla.config import EvalLiberoConfig
from openvla.eval.libero import LIBERO_CAMERA, libero_gripper, policy_spec
from openvla.eval.metrics import success_summary, wilson_interval
from openvla.eval.policy import PolicySpec, RandomPolicy, build_policy
from openvla.policy.chunking import OpenLoopExecutor, TemporalEnsembleExecutor, ensemble_weights, make_executor
from openvla.policy.sessions import SessionStore
from openvla.policy.transform import ModelTransform


def prepare_image(raw: np.ndarray, size: int, center_crop: bool) -> np.ndarray:
    """What reaches the processor in eval-libero: LIBERO's camera steps, then the model's transform."""
    return ModelTransform(size, center_crop=center_crop)(LIBERO_CAMERA(raw))


@pytest.fixture
def spatial_env():
    return shared_spatial_env()


def test_policy_spec_carries_every_policy_setting_of_the_evaluation(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    cfg = EvalLiberoConfig(execution="open_loop", open_loop_steps=4, ensemble_decay=0.2, center_crop=False,
                           unnorm_key="libero_embedded", seed=5, workers=2)  # fmt: skip
    spec = policy_spec(cfg, model_dir="models/m-hf")
    assert spec == PolicySpec(kind="model", model_dir="models/m-hf", unnorm_key="libero_embedded",
                              center_crop=False, execution="open_loop", ensemble_decay=0.2, open_loop_steps=4, seed=5,
                              threads=4)  # fmt: skip
    random = policy_spec(dataclasses.replace(cfg, workers=16), kind="random", stats_path="stats.json")
    assert (random.kind, random.stats_path, random.threads) == ("random", "stats.json", 1)  # at least one thread


# --- image pipeline -------------------------------------------------------------------------------------------------
def _frame(size: int = 128, seed: int = 0) -> np.ndarray:
    """A camera-like frame: smooth gradients, edges and some noise (JPEG and lanczos both have work to do)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([200 * x, 150 * y + 50 * np.sin(12 * x), 120 + 100 * np.cos(7 * (x + y))], -1)
    img[size // 4 : size // 2, size // 3 : size // 2] = [20, 30, 200]  # a hard-edged "object"
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _training_frame(raw: np.ndarray, size: int, center_crop: bool) -> np.ndarray:
    """What training sees for a raw LIBERO frame: the converter's rotation and RLDS JPEG feature, then the data
    pipeline's decode + resize (and, for the crop case, the deterministic counterpart of its random crop)."""
    from openvla.data.convert import _prepare_images
    from openvla.data.image_ops import center_crop_resize, decode_and_resize
    from openvla.data.rlds_writer import episode_features

    episode = SimpleNamespace(image=raw[None], secondary_image=None, wrist_image=None)
    stored = _prepare_images(episode, rotate_180=True, image_size=0).image[0]
    features = episode_features(stored.shape, state_dim=8, action_dim=7)
    encoded = features["steps"]["observation"]["image"].encode_example(stored)
    image = decode_and_resize(encoded, size)
    if center_crop:
        image = center_crop_resize(image)
    return image.numpy()


@pytest.mark.parametrize("size", [64, 128, 224])
@pytest.mark.parametrize("center_crop", [False, True])
def test_eval_image_pipeline_equals_training_pipeline(size, center_crop):
    raw = _frame(128)
    expected = _training_frame(raw, size, center_crop)
    got = prepare_image(raw, size, center_crop)
    assert got.shape == (size, size, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_eval_image_is_rotated_upright():
    raw = np.zeros((128, 128, 3), np.uint8)
    raw[:16] = 255  # LIBERO renders upside down: a bright band at the top of the raw frame ...
    img = prepare_image(raw, 128, center_crop=False)
    assert img[-8:].mean() > 200 and img[:8].mean() < 30  # ... is at the bottom of the policy's frame


# --- gripper and chunks ----------------------------------------------------------------------------------------------
def test_gripper_mapping_binarizes_and_flips_to_libero_convention():
    actions = np.array([[0.1, -0.2, 0.3, 0.0, 0.01, -0.02, g] for g in (1.0, 0.7, 0.2, 0.0)])
    out = libero_gripper(actions)
    np.testing.assert_array_equal(out[:, -1], [-1.0, -1.0, 1.0, 1.0])  # 1 = open → −1 (LIBERO open)
    np.testing.assert_array_equal(out[:, :6], actions[:, :6])
    assert actions[0, -1] == 1.0  # input untouched


def test_temporal_ensembling_averages_overlapping_predictions_oldest_first():
    decay = 0.5
    ex = TemporalEnsembleExecutor(decay)
    a, b, c, d = (np.arange(3)[:, None] + 10 * k + np.zeros((3, 7)) for k in range(1, 5))  # chunks of K = 3
    ex.push(a)
    np.testing.assert_allclose(ex.pop(), a[0])
    ex.push(b)
    w = np.exp(-decay * np.arange(2))
    w /= w.sum()
    np.testing.assert_allclose(ex.pop(), w[0] * a[1] + w[1] * b[0])
    ex.push(c)
    w3 = ensemble_weights(3, decay)
    np.testing.assert_allclose(ex.pop(), w3[0] * a[2] + w3[1] * b[1] + w3[2] * c[0])
    ex.push(d)  # a has ended: three predictions (b, c, d) cover step 3
    np.testing.assert_allclose(ex.pop(), w3[0] * b[2] + w3[1] * c[1] + w3[2] * d[0])
    np.testing.assert_allclose(w3, np.exp(-0.5 * np.arange(3)) / np.exp(-0.5 * np.arange(3)).sum())
    ex.reset()
    with pytest.raises(RuntimeError):
        ex.pop()


def test_temporal_ensembling_of_single_actions_is_the_identity():
    ex = make_executor("ensemble", decay=0.01)
    for k in range(4):
        ex.push(np.full((1, 7), float(k)))
        np.testing.assert_array_equal(ex.pop(), np.full(7, float(k)))


def test_open_loop_executes_the_whole_chunk_before_querying_again():
    ex = OpenLoopExecutor()
    assert ex.wants_query()
    ex.push(np.arange(21, dtype=float).reshape(3, 7))
    popped = []
    while not ex.wants_query():
        popped.append(ex.pop()[0])
    assert popped == [0.0, 7.0, 14.0]
    with pytest.raises(ValueError, match="open_loop"):
        make_executor("closed")


def test_session_will_query_tells_which_steps_read_an_observation():
    store = SessionStore("open_loop")
    assert store.will_query("a")  # a new session queries first
    executor = store.begin("a", "put the bowl on the plate")
    executor.push(np.zeros((3, 7)))
    reads = []
    for _ in range(3):
        store.begin("a", "put the bowl on the plate").pop()
        reads.append(store.will_query("a"))
    assert reads == [False, False, True]  # the chunk's middle steps read nothing; its end asks again
    executor.push(np.zeros((2, 7)))
    store.reset("a")
    assert store.will_query("a")  # a new episode queries whatever is still queued
    ensemble = SessionStore("ensemble")
    ensemble.begin("b", "x").push(np.zeros((4, 7)))
    ensemble.begin("b", "x").pop()
    assert ensemble.will_query("b")  # temporal ensembling reads every step


def test_open_loop_steps_make_a_session_query_after_that_many_actions():
    store = SessionStore("open_loop", open_loop_steps=2)
    store.begin("a", "x").push(np.arange(8 * 7, dtype=float).reshape(8, 7))
    popped, reads = [], []
    for _ in range(2):
        popped.append(store.begin("a", "x").pop()[0])
        reads.append(store.will_query("a"))
    assert popped == [0.0, 7.0] and reads == [False, True]  # the chunk's last 6 actions are never executed


# --- statistics ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(0, 10, 0.0, 0.27753), (5, 10, 0.23659, 0.76341), (10, 10, 0.72247, 1.0), (7, 20, 0.18119, 0.56714)],
)
def test_wilson_interval_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-5) and hi == pytest.approx(high, abs=1e-5)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert success_summary(3, 4)["success_rate"] == 0.75


# --- policies --------------------------------------------------------------------------------------------------------
def test_random_policy_samples_the_q01_q99_box_and_is_seeded():
    stats = {"q01": [-0.5] * 6 + [0.0], "q99": [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 1.0], "mask": [True] * 6 + [False]}
    policy = RandomPolicy(stats, seed=3)
    acts = np.stack([policy.act(None) for _ in range(800)])
    assert acts.shape == (800, 7)
    assert (acts[:, :6] >= -0.5).all() and (acts[:, :6] <= np.array(stats["q99"][:6])).all()
    assert (acts[:, 6] >= 0).all() and (acts[:, 6] <= 1).all() and acts[:, 6].std() > 0.2
    policy.seed(11)
    first = policy.act(None)
    policy.seed(11)
    np.testing.assert_array_equal(policy.act(None), first)


def test_build_policy_random_without_stats_uses_the_full_action_range():
    policy = build_policy(PolicySpec(kind="random"))
    np.testing.assert_array_equal(policy.low, [-1, -1, -1, -1, -1, -1, 0])
    with pytest.raises(ValueError, match="unknown policy kind"):
        build_policy(PolicySpec(kind="nope"))  # type: ignore[arg-type]


def test_config_rejects_more_episodes_than_fixed_initial_states():
    with pytest.raises(ValueError, match="> 50"):
        EvalLiberoConfig(first_init_state=40, episodes_per_task=20)


# --- closed loop in the simulator -------------------------------------------------------------------------------------
class _KeepOpen:
    """The shared session env, protected from the harness's ``close()``."""

    def __init__(self, env):
        self._env = env

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._env, name)


@pytest.mark.sim
def test_real_frame_goes_through_the_same_pipeline_as_training(spatial_env):
    from openvla.sim.libero_env import camera_image, get_task, init_states, reset_to_state

    obs = reset_to_state(spatial_env, init_states(get_task("libero_spatial", 0))[0])
    raw = camera_image(obs, "agentview")
    for center_crop in (False, True):
        np.testing.assert_array_equal(prepare_image(raw, 96, center_crop), _training_frame(raw, 96, center_crop))


@pytest.mark.sim
def test_random_policy_episodes_write_metrics_plots_and_video(spatial_env, tmp_path, monkeypatch):
    from openvla.eval.libero import evaluate_libero
    from openvla.sim import libero_env

    monkeypatch.setattr(libero_env, "make_env", lambda *a, **k: _KeepOpen(spatial_env))
    cfg = EvalLiberoConfig(
        episodes_per_task=2, first_init_state=30, resolution=SIM_RESOLUTION, videos=1, workers=1, max_steps=4
    )
    spec = PolicySpec(kind="random", seed=0)
    summary = evaluate_libero(cfg, spec, metrics_path=tmp_path / "libero.json", plots_dir=tmp_path / "plots")
    assert summary["episodes"] == 2 and summary["successes"] == 0 and summary["steps_mean"] == 4
    assert summary["ci95_low"] == 0.0 and summary["ci95_high"] == pytest.approx(wilson_interval(0, 2)[1])
    assert summary["init_states"] == [30, 32]
    assert json.loads((tmp_path / "libero.json").read_text())["suites"]["libero_spatial"]["tasks"]["0"]["episodes"] == 2
    with open(tmp_path / "plots" / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["suite"], r["task_id"], r["init_index"], r["steps"]) for r in rows] == [
        ("libero_spatial", "0", "30", "4"),
        ("libero_spatial", "0", "31", "4"),
    ]
    videos = list((tmp_path / "plots" / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["libero_spatial_task0_init30_fail.mp4"] and videos[0].stat().st_size > 1000
    assert summary["videos"] == [str(videos[0])]


def test_video_selection_keeps_the_first_successes_and_failures_by_episode_not_arrival():
    from openvla.eval.libero import EpisodeResult, VideoSelection

    def result(init: int, success: bool) -> EpisodeResult:
        return EpisodeResult("libero_spatial", 0, init, success, 10, 1.0, [0.1], np.full((10, 7), init, float))

    kept = VideoSelection(2)
    for init, success in [(35, False), (33, True), (31, False), (38, True), (30, False), (34, True), (32, False)]:
        kept.offer(result(init, success))  # workers finish out of order
    chosen = kept.chosen()
    s = "libero_spatial"
    assert [key for key, _ in chosen] == [
        (s, 0, 33, "success"),
        (s, 0, 34, "success"),
        (s, 0, 30, "fail"),
        (s, 0, 31, "fail"),
    ]
    assert all(res.actions[0, 0] == key[2] for key, res in chosen)  # each keeps its own episode (to replay)
    none = VideoSelection(0)
    none.offer(result(30, True))
    assert none.chosen() == []


def test_policy_speed_reports_latency_and_actions_per_second_of_policy_time():
    from openvla.eval.libero import EpisodeResult, policy_speed

    results = [
        EpisodeResult("libero_spatial", 0, 30, True, 16, 5.0, query_seconds=[0.010, 0.020]),  # K = 8 open loop
        EpisodeResult("libero_spatial", 0, 31, False, 8, 3.0, query_seconds=[0.030]),
    ]
    speed = policy_speed(results)
    assert speed["query_latency_ms_median"] == pytest.approx(20.0)
    assert speed["query_latency_ms_p90"] == pytest.approx(28.0)  # numpy's linear interpolation of 10, 20, 30
    assert speed["queries_per_episode"] == pytest.approx(1.5)
    assert speed["actions_per_second"] == pytest.approx(24 / 0.060)
    assert speed["policy_time_fraction"] == pytest.approx(0.060 / 8.0)  # 60 ms of queries in 5 + 3 s of episodes
    assert policy_speed([EpisodeResult("libero_spatial", 0, 0, False, 3, 1.0)]) == {}


@pytest.fixture(scope="module")
def exported_oft_model(tmp_path_factory) -> str:
    """The tiny OpenVLA-OFT model (K = 4, L1 head, proprio), exported as ``openvla export`` writes it."""
    from serve_fixtures import chunked_tiny_vla

    from openvla.hf.export import export_hf

    model = chunked_tiny_vla(seed=5, chunk=4)
    model.config.image_augmentation = True  # so the centre crop is part of both paths
    source = tmp_path_factory.mktemp("oft-merged")
    model.save_pretrained(str(source))
    (source / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    target = tmp_path_factory.mktemp("oft-models") / "tiny-oft-hf"
    export_hf(source, target)
    return str(target)


@pytest.mark.sim
@pytest.mark.parametrize("server_execution", ["chunk", "ensemble"])
def test_eval_over_http_gives_the_in_process_actions_and_success(
    spatial_env, exported_oft_model, monkeypatch, server_execution
):
    """``eval-libero --server``: the same episodes, every query over HTTP with the raw observation, give the same
    actions bit for bit, whether the client or the server executes the chunks."""
    from openvla.config import ServeConfig
    from openvla.eval.libero import EpisodeSpec, run_episodes
    from openvla.policy import Policy
    from openvla.serve.server import BackgroundServer
    from openvla.sim import libero_env

    monkeypatch.setattr(libero_env, "make_env", lambda *a, **k: _KeepOpen(spatial_env))
    cfg = EvalLiberoConfig(
        episodes_per_task=2, first_init_state=30, resolution=SIM_RESOLUTION, videos=0, workers=1, max_steps=12,
        unnorm_key="libero_embedded", execution="ensemble",
    )  # fmt: skip
    episodes = [EpisodeSpec("libero_spatial", 0, 30), EpisodeSpec("libero_spatial", 0, 31)]
    common = {"unnorm_key": cfg.unnorm_key, "execution": cfg.execution, "ensemble_decay": cfg.ensemble_decay}
    local = list(run_episodes(cfg, PolicySpec(kind="model", model_dir=exported_oft_model, **common), episodes))

    served = Policy.from_pretrained(exported_oft_model, device="cpu", dtype="float32")
    config = ServeConfig(execution=server_execution, ensemble_decay=cfg.ensemble_decay)
    with BackgroundServer(served, config) as server:
        spec = PolicySpec(kind="server", server_url=server.url, **common)
        remote = list(run_episodes(cfg, spec, episodes))
    assert served.queries == 0  # the server runs predict_batch, not act: its own sessions executed the chunks
    assert [(r.init_index, r.success, r.steps) for r in remote] == [(r.init_index, r.success, r.steps) for r in local]
    for a, b in zip(local, remote, strict=True):
        assert a.actions.shape == (12, 7)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert len({a.actions[5].tobytes() for a in local}) == 2  # the two initial states led to different actions


@pytest.mark.sim
def test_a_two_camera_film_model_sees_agentview_and_the_wrist_camera_in_process_and_over_http(
    spatial_env, monkeypatch, tmp_path
):
    """eval-libero feeds a two-camera model LIBERO's agentview and robot0_eye_in_hand frames (both through the camera
    steps); over HTTP the client sends both and gets the same actions.

    Kept before the two-suite test: that one builds and closes other LIBERO environments in this process, after which
    the shared test environment's renders are no longer reproducible (a GL-context effect of the shared fixture).
    """
    from serve_fixtures import chunked_tiny_vla

    from openvla.eval.libero import EpisodeSpec, run_episodes
    from openvla.hf.export import export_hf
    from openvla.policy import Policy
    from openvla.serve.server import BackgroundServer
    from openvla.sim import libero_env

    model = chunked_tiny_vla(seed=6, chunk=4, cameras=("primary", "wrist"), film=True)
    model.save_pretrained(str(tmp_path / "merged"))
    (tmp_path / "merged" / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats))
    export_hf(tmp_path / "merged", tmp_path / "two-hf")
    seen: list[list[str]] = []
    original = Policy.camera_frames

    def recording(self, sample):
        if isinstance(sample, dict):  # act() resolves the observation's frames by role (predict then gets a list)
            seen.append(sorted(sample))
        return original(self, sample)

    monkeypatch.setattr(Policy, "camera_frames", recording)
    monkeypatch.setattr(libero_env, "make_env", lambda *a, **k: _KeepOpen(spatial_env))
    cfg = EvalLiberoConfig(
        episodes_per_task=1, first_init_state=30, resolution=SIM_RESOLUTION, videos=0, workers=1, max_steps=8,
        unnorm_key="libero_embedded", execution="ensemble",
    )  # fmt: skip
    episodes = [EpisodeSpec("libero_spatial", 0, 30)]
    common = {"unnorm_key": cfg.unnorm_key, "execution": cfg.execution, "ensemble_decay": cfg.ensemble_decay}
    (local,) = run_episodes(cfg, PolicySpec(kind="model", model_dir=str(tmp_path / "two-hf"), **common), episodes)
    assert seen and all(s == ["primary", "wrist"] for s in seen)  # every query had both cameras
    served = Policy.from_pretrained(tmp_path / "two-hf", device="cpu", dtype="float32")
    with BackgroundServer(served) as server:
        (remote,) = run_episodes(cfg, PolicySpec(kind="server", server_url=server.url, **common), episodes)
    assert local.actions.shape == (8, 7)
    np.testing.assert_array_equal(local.actions, remote.actions)


class _PixelChunkPolicy:
    """An open-loop policy whose 4-action chunks move the arm by what it sees (the agentview's mean brightness), and
    which keeps every frame it read: a stale or differently timed frame changes its actions."""

    cameras = ("primary",)

    def __init__(self, skip_renders: bool = True) -> None:
        self.sessions = SessionStore("open_loop")
        self.skip_renders = skip_renders
        self.queries = 0
        self.seen: list[np.ndarray] = []

    def will_query(self, session: str) -> bool:
        return self.sessions.will_query(session) if self.skip_renders else True

    def reset(self, session: str) -> None:
        self.sessions.reset(session)

    def act(self, observation: dict, *, session: str) -> np.ndarray:
        executor = self.sessions.begin(session, observation["instruction"])
        if executor.wants_query():
            frame = observation["images"]["primary"]
            self.seen.append(frame.copy())
            self.queries += 1
            shift = frame.mean(axis=(0, 1)) / 255.0 - 0.5  # (3,) per channel
            executor.push(np.array([[*(0.8 * shift), 0, 0, 0, 0.0]] * 4))
        return executor.pop()


@pytest.mark.sim
def test_open_loop_episodes_skip_the_renders_nobody_reads_with_the_same_frames_and_actions(spatial_env):
    from openvla.eval.libero import camera_switch, run_episode
    from openvla.sim.libero_env import get_task, init_states

    state = init_states(get_task("libero_spatial", 0))[0]
    # one short episode first, so the switch holds a frame of every camera (its first call always renders)
    run_episode(spatial_env, state, _PixelChunkPolicy(skip_renders=False), "pick up the bowl", max_steps=1)
    runs = {}
    for skip in (False, True):
        policy, actions = _PixelChunkPolicy(skip_renders=skip), []
        switch = camera_switch(spatial_env)
        before = switch.skipped
        rollout = run_episode(spatial_env, state, policy, "pick up the bowl", max_steps=12, layout_seed=3,
                              actions=actions)  # fmt: skip
        runs[skip] = (policy, np.stack(actions), switch.skipped - before, rollout)
    (skipping, acts, skipped, rollout), (full, full_acts, full_skipped, _) = runs[True], runs[False]
    assert skipping.queries == full.queries == 3 and rollout.steps == 12
    for a, b in zip(skipping.seen, full.seen, strict=True):
        np.testing.assert_array_equal(a, b)  # every frame the policy read was rendered when it was due
    np.testing.assert_array_equal(acts, full_acts)
    assert np.ptp(acts[:, :3], axis=0).max() > 0  # the chunks differ: the arm moved and the view changed
    # the reset's two observation updates and 9 of the 10 no-ops skip their renders in both runs; open loop also
    # skips the 9 steps whose frames no query reads (three per chunk of four)
    assert skipped - full_skipped == 9 * len(spatial_env.env.camera_names)
    assert switch.render  # left on for whoever steps the env next


@pytest.mark.sim
def test_replaying_an_episode_from_its_actions_renders_the_frames_the_policy_saw(spatial_env):
    """Videos are made by replaying the chosen episodes: the same initial state, layout seed and actions give the
    frames the rollout rendered (the policy's frames are these after LIBERO's JPEG step)."""
    from openvla.eval.libero import replay_episode, run_episode
    from openvla.policy.transform import jpeg_roundtrip
    from openvla.sim.libero_env import get_task, init_states

    state = init_states(get_task("libero_spatial", 0))[1]
    policy, actions = _PixelChunkPolicy(), []
    rollout = run_episode(spatial_env, state, policy, "pick up the bowl", max_steps=9, layout_seed=5, actions=actions)
    frames, success = replay_episode(spatial_env, state, np.stack(actions), layout_seed=5)
    assert len(frames) == rollout.steps + 1 == 10 and success == rollout.success
    for query, seen in zip((0, 4, 8), policy.seen, strict=True):
        np.testing.assert_array_equal(jpeg_roundtrip(frames[query]), seen)
    assert not np.array_equal(frames[0], frames[8])  # the arm moved in view


@pytest.mark.sim
def test_batched_queries_from_one_shared_policy_give_the_actions_of_a_policy_per_worker(
    spatial_env, exported_oft_model, monkeypatch
):
    """``batch_queries``: the workers query one policy behind the micro-batcher and execute its chunks open loop
    themselves; the actions equal those of an in-process policy, and the frames between queries are not rendered."""
    from openvla.eval.libero import EpisodeSpec, run_episodes, shared_policy
    from openvla.sim import libero_env

    monkeypatch.setattr(libero_env, "make_env", lambda *a, **k: _KeepOpen(spatial_env))
    episodes = [EpisodeSpec("libero_spatial", 0, 30), EpisodeSpec("libero_spatial", 0, 31)]
    runs = {}
    for batch_queries in (False, True):
        cfg = EvalLiberoConfig(
            episodes_per_task=2, first_init_state=30, resolution=SIM_RESOLUTION, videos=0, workers=1, max_steps=10,
            unnorm_key="libero_embedded", execution="open_loop", batch_queries=batch_queries,
        )  # fmt: skip
        spec = PolicySpec(kind="model", model_dir=exported_oft_model, unnorm_key=cfg.unnorm_key, execution="open_loop")
        with shared_policy(cfg, spec) as (worker_spec, server):
            runs[batch_queries] = list(run_episodes(cfg, worker_spec, episodes))
            stats = server.app.state.batcher.stats if server is not None else None
        assert worker_spec.kind == ("server" if batch_queries else "model")
    local, batched = runs[False], runs[True]
    queries = [len(r.query_seconds) for r in batched]
    assert queries == [len(r.query_seconds) for r in local] == [3, 3]  # K = 4: steps 0, 4, 8
    assert stats.requests == sum(queries) and stats.errors == 0
    for a, b in zip(local, batched, strict=True):
        np.testing.assert_array_equal(a.actions, b.actions)
        assert b.renders_skipped == a.renders_skipped > 0  # 6 of the 10 steps read nothing, nor do 9 no-ops


@pytest.mark.sim
def test_one_run_over_two_suites_writes_the_per_suite_table(tmp_path):
    """OpenVLA's protocol in one stage run: several suites, their tasks, fixed states, seeds logged, the table."""
    from openvla.eval.libero import episode_seed, evaluate_libero

    cfg = EvalLiberoConfig(
        suites=["libero_spatial", "libero_object"], task_ids=[0, 1], episodes_per_task=2, first_init_state=30,
        resolution=SIM_RESOLUTION, videos=0, workers=1, max_steps=3,
    )  # fmt: skip
    summary = evaluate_libero(cfg, PolicySpec(kind="random", seed=0), metrics_path=tmp_path / "libero.json",
                              plots_dir=tmp_path / "plots")  # fmt: skip
    assert summary["episodes"] == 8 and summary["suites_evaluated"] == ["libero_spatial", "libero_object"]
    for suite in cfg.suites:
        entry = summary["suites"][suite]
        assert entry["episodes"] == 4 and sorted(entry["tasks"]) == ["0", "1"]
        assert all(t["episodes"] == 2 and t["language"] for t in entry["tasks"].values())
        assert entry["ci95_high"] == pytest.approx(wilson_interval(entry["successes"], 4)[1])
    rates = [summary["suites"][s]["success_rate"] for s in cfg.suites]
    assert summary["average_success_rate"] == pytest.approx(np.mean(rates))
    assert list(summary["table"]) == ["Spatial", "Object", "Average"]
    assert summary["table"]["Average"] == pytest.approx(round(100 * np.mean(rates), 1))
    with open(tmp_path / "plots" / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["suite"], r["task_id"], r["init_index"]) for r in rows] == [
        (s, t, i) for s in cfg.suites for t in ("0", "1") for i in ("30", "31")
    ]
    assert [int(r["seed"]) for r in rows] == [
        episode_seed(0, r["suite"], int(r["task_id"]), int(r["init_index"])) for r in rows
    ]
    assert len({r["seed"] for r in rows}) == 8  # every episode its own seed, also across suites
    with open(tmp_path / "plots" / "success.csv") as f:
        assert len(list(csv.DictReader(f))) == 4  # one row per (suite, task)


def test_eval_crops_as_the_model_was_trained_unless_told_otherwise():
    """``eval_libero.center_crop`` null (the default) follows the model's record: a model trained without crop
    augmentation is evaluated on uncropped frames, one trained with it on the centre crop. True/false force it (the
    official checkpoints record nothing)."""
    from pathlib import Path

    from openvla.config import load_params
    from openvla.policy.transform import ModelTransform

    default = load_params(Path(__file__).resolve().parents[1] / "params.yaml").eval_libero.center_crop
    assert default is None and EvalLiberoConfig().center_crop is None
    for trained_with_crop in (False, True):
        config = SimpleNamespace(image_sizes=[64], image_augmentation=trained_with_crop)
        assert ModelTransform.from_config(config, default).center_crop is trained_with_crop
        assert ModelTransform.from_config(config, True).center_crop is True
        assert ModelTransform.from_config(config, False).center_crop is False
    official = SimpleNamespace(image_sizes=[224])  # an upstream config: no image_augmentation key
    assert ModelTransform.from_config(official, default).center_crop is False


def test_the_metrics_record_the_crop_the_policy_applied(tmp_path):
    """``metrics/libero.json`` says which frames the policy saw: the resolved crop, not the setting (null)."""
    from openvla.eval.libero import _applied_center_crop
    from openvla.model import get_model_config

    for trained_with_crop in (False, True):
        config = get_model_config("tiny")
        config.image_augmentation = trained_with_crop
        config.save_pretrained(tmp_path / str(trained_with_crop))
        model = PolicySpec(kind="model", model_dir=str(tmp_path / str(trained_with_crop)))
        assert _applied_center_crop(model, {}) is trained_with_crop
        forced = PolicySpec(kind="model", model_dir=model.model_dir, center_crop=not trained_with_crop)
        assert _applied_center_crop(forced, {}) is (not trained_with_crop)
    server = PolicySpec(kind="server", server_url="http://127.0.0.1:1")
    assert _applied_center_crop(server, {"transform": {"center_crop": True}}) is True
    assert _applied_center_crop(server, {}) is None  # a server that does not say
    assert _applied_center_crop(PolicySpec(kind="random"), {}) is None
