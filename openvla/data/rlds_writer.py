"""Write episodes as an RLDS dataset with a real tensorflow-datasets builder.

``write_rlds`` creates a ``tfds.core.GeneratorBasedBuilder`` subclass for the dataset name and version, runs
``download_and_prepare`` into a temporary directory and renames it to ``<data_dir>/<name>/`` only when every split
was written (``openvla.io.atomic_directory``): a bad episode leaves no partial dataset behind. The result is a normal
TFDS directory that ``tfds.builder_from_directory(<data_dir>/<name>/<version>)`` opens.

The records are serialized deterministically (protobuf map entries sorted by key): TFDS's serializer does not ask for
it, and the order of a ``tf.train.Example``'s feature map then differs from process to process, so the same episodes
gave different bytes on every run and DVC reran every stage after ``convert``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from openvla.data.errors import DataError
from openvla.data.raw_episodes import Episode
from openvla.io import atomic_directory
from openvla.tf_import import import_tfds

log = logging.getLogger(__name__)


@contextlib.contextmanager
def deterministic_serialization(tfds: Any) -> Iterator[None]:
    """While active, TFDS serializes every example with ``SerializeToString(deterministic=True)``."""
    serializer = tfds.core.example_serializer.ExampleSerializer
    original = serializer.serialize_example

    def serialize_example(self: Any, example: Any) -> bytes:
        return self.get_tf_example(example).SerializeToString(deterministic=True)

    serializer.serialize_example = serialize_example
    try:
        yield
    finally:
        serializer.serialize_example = original


def episode_features(
    image_shape: tuple[int, int, int],
    state_dim: int,
    action_dim: int,
    wrist_shape: tuple[int, int, int] | None = None,
    joint_dim: int | None = None,
    secondary_shape: tuple[int, int, int] | None = None,
) -> Any:
    """The RLDS features of the team contract (images JPEG-encoded; vectors float32)."""
    tfds = import_tfds()
    f = tfds.features
    observation: dict[str, Any] = {
        "image": f.Image(shape=image_shape, dtype=np.uint8, encoding_format="jpeg", doc="Main camera RGB."),
        "state": f.Tensor(shape=(state_dim,), dtype=np.float32, doc="Robot state (LIBERO: EEF 6 + gripper 2)."),
    }
    if secondary_shape is not None:
        observation["secondary_image"] = f.Image(
            shape=secondary_shape, dtype=np.uint8, encoding_format="jpeg", doc="Second third-person camera RGB."
        )
    if wrist_shape is not None:
        observation["wrist_image"] = f.Image(
            shape=wrist_shape, dtype=np.uint8, encoding_format="jpeg", doc="Wrist camera RGB."
        )
    if joint_dim is not None:
        observation["joint_state"] = f.Tensor(shape=(joint_dim,), dtype=np.float32, doc="Joint positions.")
    return f.FeaturesDict(
        {
            "steps": f.Dataset(
                {
                    "observation": f.FeaturesDict(observation),
                    "action": f.Tensor(shape=(action_dim,), dtype=np.float32, doc="Robot action."),
                    "language_instruction": f.Text(doc="Language instruction."),
                    "is_first": f.Scalar(dtype=np.bool_, doc="True on the first step."),
                    "is_last": f.Scalar(dtype=np.bool_, doc="True on the last step."),
                    "is_terminal": f.Scalar(dtype=np.bool_, doc="True on the last step of a demo."),
                    "reward": f.Scalar(dtype=np.float32, doc="1 on the last step of a demo unless given."),
                    "discount": f.Scalar(dtype=np.float32, doc="1 unless given."),
                }
            ),
            "episode_metadata": f.FeaturesDict({"file_path": f.Text(doc="Raw file (and group) of the episode.")}),
        }
    )


def episode_example(episode: Episode) -> dict[str, Any]:
    """One RLDS example (steps as stacked arrays) from an ``Episode``."""
    length = episode.action.shape[0]
    last = np.arange(length) == length - 1
    observation: dict[str, Any] = {"image": episode.image, "state": episode.state}
    if episode.secondary_image is not None:
        observation["secondary_image"] = episode.secondary_image
    if episode.wrist_image is not None:
        observation["wrist_image"] = episode.wrist_image
    if episode.joint_state is not None:
        observation["joint_state"] = episode.joint_state
    return {
        "steps": {
            "observation": observation,
            "action": episode.action,
            "language_instruction": [episode.instruction] * length,
            "is_first": np.arange(length) == 0,
            "is_last": last,
            "is_terminal": last,
            "reward": episode.reward if episode.reward is not None else last.astype(np.float32),
            "discount": episode.discount if episode.discount is not None else np.ones(length, np.float32),
        },
        "episode_metadata": {"file_path": episode.source},
    }


ExampleSource = Callable[[], Iterable[tuple[str, dict[str, Any]]]]


def write_rlds(
    data_dir: str | Path,
    name: str,
    version: str,
    features: Any,
    splits: Mapping[str, ExampleSource],
    description: str = "",
) -> Path:
    """Write ``splits`` (split name → a callable yielding ``(key, example)``) as TFDS dataset ``name``/``version``.

    Replaces ``<data_dir>/<name>/`` atomically and returns ``<data_dir>/<name>/<version>``. An exception raised by a
    split source propagates unchanged (TFDS's own wrapping is undone) and nothing is left on disk.
    """
    tfds = import_tfds()
    tfds.disable_progress_bar()
    target = Path(data_dir) / name
    errors: list[BaseException] = []

    def guarded(source: ExampleSource):
        try:
            yield from source()
        except BaseException as err:
            errors.append(err)
            raise

    class RLDSBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)
        RELEASE_NOTES: ClassVar[dict[str, str]] = {version: "Converted by `openvla convert`."}
        # Nothing is downloaded; TFDS would otherwise look for a checksums file next to this module's code.
        url_infos = None

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, description=description, features=features)

        def _split_generators(self, dl_manager):
            return {split: guarded(source) for split, source in splits.items()}

        def _generate_examples(self):  # every split comes from _split_generators
            raise NotImplementedError

    RLDSBuilder.name = name
    with atomic_directory(target) as tmp, deterministic_serialization(tfds):
        staging = tmp / "_tfds"
        try:
            builder = RLDSBuilder(data_dir=str(staging))
            builder.download_and_prepare(download_dir=str(staging / "_downloads"))
        except Exception as err:
            if errors:
                raise errors[0] from None
            raise DataError(f"{target}: writing the TFDS dataset failed: {err}") from err
        os.replace(staging / name / version, tmp / version)
        shutil.rmtree(staging)
    log.info("Wrote RLDS dataset %s", target / version)
    return target / version
