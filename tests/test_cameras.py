"""Several cameras and FiLM (OpenVLA-OFT, DESIGN §13): the layout of the images, what FiLM reads, and every place a
two-camera model is fed — training batches, ``Policy``, ``/act`` and a saved directory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import fake_frame, mistral_tokenizer
from serve_fixtures import chunked_tiny_vla

from openvla.model import build_vla, get_model_config
from openvla.model.vla import IGNORE_INDEX

EMBEDDED = "libero_embedded"


def _processor(config):
    from openvla.hf.processing import PrismaticProcessor
    from openvla.model.image_processing import PrismaticImageProcessor

    return PrismaticProcessor(PrismaticImageProcessor.from_vla_config(config), mistral_tokenizer())


def _pixels(n: int, images: int, seed: int = 0) -> torch.Tensor:
    config = get_model_config("tiny")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6 * images, config.image_size, config.image_size, generator=generator)


def test_two_images_are_each_one_image_concatenated_in_camera_order():
    torch.manual_seed(0)
    one = build_vla(get_model_config("tiny")).eval()
    config = get_model_config("tiny")
    config.set_cameras(["primary", "wrist"])
    two = build_vla(config).eval()
    assert set(two.state_dict()) == set(one.state_dict())  # no new parameters: the same backbone sees both
    two.load_state_dict(one.state_dict())
    first, second = _pixels(2, 1, seed=1), _pixels(2, 1, seed=2)
    with torch.no_grad():
        both = two.vision_backbone(torch.cat([first, second], dim=1))
        alone_first, alone_second = one.vision_backbone(first), one.vision_backbone(second)
    patches = one.vision_backbone.num_patches
    assert both.shape == (2, 2 * patches, alone_first.shape[2])
    torch.testing.assert_close(both[:, :patches], alone_first, rtol=0, atol=1e-6)
    torch.testing.assert_close(both[:, patches:], alone_second, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="expected 6 per image × 2 images"):
        two.vision_backbone(first)


def test_film_starts_as_the_identity_and_then_reads_the_instruction():
    torch.manual_seed(0)
    plain = build_vla(get_model_config("tiny")).eval()
    config = get_model_config("tiny")
    config.use_film = True
    film = build_vla(config).eval()
    new = sorted(set(film.state_dict()) - set(plain.state_dict()))
    blocks = len(plain.vision_backbone.featurizer.blocks) - 1  # the feature block and those before it
    assert len(new) == 2 * blocks * 4 and all(".film." in k for k in new)  # 2 ViTs × blocks × (γ, β) × (W, b)
    assert all(float(film.state_dict()[k].abs().sum()) == 0 for k in new)
    film.load_state_dict(plain.state_dict(), strict=False)
    pixels = _pixels(1, 1)
    language = torch.randn(1, config.text_config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(film.vision_backbone(pixels, language), plain.vision_backbone(pixels), rtol=0,
                                   atol=1e-6)  # fmt: skip
        for name, parameter in film.named_parameters():
            if ".film." in name:
                parameter.normal_(std=0.05)
        a = film.vision_backbone(pixels, language)
        b = film.vision_backbone(pixels, 2 * language)
    assert not torch.allclose(a, b, atol=1e-3)  # the features now depend on the language vector
    with pytest.raises(ValueError, match="FiLM"):
        film.vision_backbone(pixels)


def test_film_language_vector_is_the_prompt_mean_in_training_and_at_inference():
    """Training rows hold prompt + action tokens (labelled) + padding; inference rows the prompt alone. Both must
    give FiLM the same vector: the mean embedding of the unlabelled, unpadded tokens."""
    embeds = torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    labels = torch.full((2, 6), IGNORE_INDEX)
    labels[0, 3:5] = 7  # two action tokens at the end of row 0
    got = build_vla(get_model_config("tiny")).language_embedding(embeds, mask, labels)
    torch.testing.assert_close(got[0], embeds[0, :3].mean(0))
    torch.testing.assert_close(got[1], embeds[1, :3].mean(0))


def test_training_batches_stack_the_cameras_on_channels_in_order():
    import functools

    from openvla.actions import ActionTokenizer
    from openvla.model.batching import VLABatchTransform
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.prompts import get_prompt_builder

    config = get_model_config("tiny")
    processor = PrismaticImageProcessor.from_vla_config(config)

    def transform(cameras):
        prompt_builder = functools.partial(get_prompt_builder, config.llm_backbone_id)
        return VLABatchTransform(mistral_tokenizer(), ActionTokenizer(config.base_vocab_size, 256), processor,
                                 prompt_builder, cameras=cameras)  # fmt: skip

    frame = fake_frame(0, "put the bowl on the plate")
    wrist = np.random.default_rng(9).integers(0, 256, frame["observation"]["image_primary"].shape, dtype=np.uint8)
    frame["observation"]["image_wrist"] = wrist
    one = transform(("primary",))(frame)["pixel_values"]
    two = transform(("primary", "wrist"))(frame)["pixel_values"]
    assert one.shape[0] == 6 and two.shape[0] == 12
    torch.testing.assert_close(two[:6], one, rtol=0, atol=0)
    torch.testing.assert_close(two[6:], processor.apply_transform(wrist[-1]), rtol=0, atol=0)


@pytest.fixture(scope="module")
def two_camera_policy():
    from openvla.policy import Policy

    model = chunked_tiny_vla(seed=4, chunk=4, cameras=("primary", "wrist"), film=True)
    return Policy(model, _processor(model.config), unnorm_key=EMBEDDED)


def _observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        "wrist_image": rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
        "proprio": rng.normal(size=8),
        "instruction": "put the bowl on the plate",
    }


def test_policy_reads_both_cameras_in_any_form(two_camera_policy):
    policy = two_camera_policy
    assert policy.cameras == ["primary", "wrist"] and policy.describe()["cameras"] == ["primary", "wrist"]
    obs = _observation(0)
    chunk = policy.act(obs)
    assert chunk.shape == (4, 7)
    by_role = {"images": {"primary": obs["image"], "wrist": obs["wrist_image"]}}
    rest = {k: obs[k] for k in ("proprio", "instruction")}
    np.testing.assert_array_equal(policy.act({**by_role, **rest}), chunk)
    listed = policy.predict([[obs["image"], obs["wrist_image"]]], [obs["instruction"]], [obs["proprio"]])
    np.testing.assert_array_equal(listed.chunk_actions[0], chunk)
    swapped = policy.predict([[obs["wrist_image"], obs["image"]]], [obs["instruction"]], [obs["proprio"]])
    assert not np.allclose(swapped.chunk_actions[0], chunk)  # the order of the cameras matters
    other = policy.predict([[obs["image"], obs["wrist_image"]]], ["open the top drawer"], [obs["proprio"]])
    assert not np.allclose(other.chunk_actions[0], chunk)  # so does the instruction (FiLM and the prompt)
    with pytest.raises(ValueError, match=r"no frame for \['wrist'\]"):
        policy.act({"image": obs["image"], **rest})


def test_act_server_takes_the_wrist_camera(two_camera_policy):
    from openvla.serve.client import ActClient, ActError
    from openvla.serve.server import BackgroundServer

    obs = _observation(1)
    expected = two_camera_policy.act(obs)
    with BackgroundServer(two_camera_policy) as server, ActClient(server.url) as client:
        assert client.health()["cameras"] == ["primary", "wrist"]
        common = {"unnorm_key": EMBEDDED, "proprio": obs["proprio"]}
        got = client.act(obs["image"], obs["instruction"], wrist_image=obs["wrist_image"], **common)
        np.testing.assert_array_equal(got, expected)
        got = client.act(obs["image"], obs["instruction"], images={"wrist": obs["wrist_image"]}, **common)
        np.testing.assert_array_equal(got, expected)
        with pytest.raises(ActError, match="missing the 'wrist' camera") as err:
            client.act(obs["image"], obs["instruction"], **common)
        assert err.value.status == 422
        with pytest.raises(ActError, match="unknown camera role"):
            client.act(obs["image"], obs["instruction"], images={"wirst": obs["wrist_image"]}, **common)


def test_a_saved_two_camera_film_model_loads_with_its_options_and_actions(two_camera_policy, tmp_path):
    from openvla.model.vla import OpenVLAForActionPrediction
    from openvla.policy import Policy

    model = two_camera_policy.model
    model.save_pretrained(str(tmp_path))
    loaded = OpenVLAForActionPrediction.from_pretrained(str(tmp_path), attn_implementation="sdpa").eval()
    assert loaded.config.camera_roles == ["primary", "wrist"] and loaded.config.num_images_in_input == 2
    assert loaded.config.use_film is True
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    obs = _observation(2)
    again = Policy(loaded, _processor(loaded.config), unnorm_key=EMBEDDED)
    # Equal weights, but a model built by from_pretrained differs from the in-memory one in the last float bits
    # (≈ 4e-7 here); two loads of the directory agree exactly.
    np.testing.assert_allclose(again.act(obs), two_camera_policy.act(obs), rtol=0, atol=1e-5)


def test_processor_takes_one_prompts_camera_list():
    config = get_model_config("tiny")
    config.set_cameras(["primary", "wrist"])
    processor = _processor(config)
    rng = np.random.default_rng(0)
    primary, wrist = (rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(2))
    inputs = processor("In: What action should the robot take to go?\nOut:", [primary, wrist])
    assert tuple(inputs["pixel_values"].shape) == (1, 12, config.image_size, config.image_size)
    batch = processor(["a", "b"], [[primary, wrist], [wrist, primary]])
    torch.testing.assert_close(batch["pixel_values"][0], inputs["pixel_values"][0])
    torch.testing.assert_close(batch["pixel_values"][1, :6], inputs["pixel_values"][0, 6:])
