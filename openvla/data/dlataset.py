"""The small part of dlimp we need: a ``tf.data`` wrapper for RLDS episodes with trajectory and frame maps.

``DLataset.from_rlds`` reads a TFDS builder's episodes with images kept encoded (decoding happens per frame, after
the shuffle buffer, so the buffer holds compact JPEG bytes). Each element is one whole trajectory: every step key
with a leading time axis T, ``traj_metadata`` (episode metadata broadcast to every step), and ``_len``,
``_traj_index``, ``_frame_index``. ``traj_map`` transforms trajectories, ``flatten`` turns them into frames and
``frame_map`` transforms frames; every map runs with ``num_parallel_calls`` threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from openvla.tf_import import import_tensorflow, import_tfds

AUTOTUNE = -1


class DLataset:
    """A ``tf.data.Dataset`` of trajectories or frames, with the RLDS-specific operations as methods.

    A thin wrapper rather than a subclass: ``tf.data.Dataset`` is not designed to be subclassed; ``.dataset`` is
    the plain dataset when a caller needs it (``tf.data`` operations not wrapped here).
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_rlds(
        cls,
        builder: Any,
        split: str = "train",
        *,
        shuffle: bool = True,
        num_parallel_reads: int = AUTOTUNE,
        seed: int | None = None,
    ) -> DLataset:
        """Episodes of ``builder`` (a TFDS builder, e.g. ``tfds.builder_from_directory``), images still encoded."""
        tf, tfds = import_tensorflow(), import_tfds()
        read_config = tfds.ReadConfig(
            shuffle_seed=seed,
            interleave_cycle_length=num_parallel_reads,
            num_parallel_calls_for_interleave_files=num_parallel_reads,
            add_tfds_id=False,
        )
        episodes = builder.as_dataset(
            split=split,
            decoders={"steps": tfds.decode.SkipDecoding()},  # keep the step tensors raw: images stay JPEG bytes
            shuffle_files=shuffle,
            read_config=read_config,
        )

        def to_trajectory(index, episode):
            steps = dict(episode["steps"])
            length = tf.shape(tf.nest.flatten(steps)[0])[0]
            metadata = episode.get("episode_metadata", {})
            steps["traj_metadata"] = tf.nest.map_structure(
                lambda v: tf.repeat(tf.expand_dims(v, 0), length, axis=0), dict(metadata)
            )
            steps["_len"] = tf.fill([length], length)
            steps["_traj_index"] = tf.fill([length], tf.cast(index, tf.int32))
            steps["_frame_index"] = tf.range(length)
            return steps

        dataset = episodes.enumerate().map(to_trajectory, num_parallel_calls=num_parallel_reads)
        return cls(dataset)

    # -- transforms --------------------------------------------------------------------------------------------
    def traj_map(self, fn: Callable[[dict], dict], num_parallel_calls: int = AUTOTUNE) -> DLataset:
        """Apply ``fn`` to every trajectory."""
        return DLataset(self.dataset.map(fn, num_parallel_calls=num_parallel_calls))

    def frame_map(self, fn: Callable[[dict], dict], num_parallel_calls: int = AUTOTUNE) -> DLataset:
        """Apply ``fn`` to every frame (after ``flatten``)."""
        return DLataset(self.dataset.map(fn, num_parallel_calls=num_parallel_calls))

    def filter(self, predicate: Callable[[dict], Any]) -> DLataset:
        return DLataset(self.dataset.filter(predicate))

    def flatten(self, num_parallel_calls: int = AUTOTUNE) -> DLataset:
        """Trajectories → frames (slices along the time axis), ``num_parallel_calls`` trajectories at a time."""
        tf = import_tensorflow()
        cycle = 1 if num_parallel_calls in (None, 0) else num_parallel_calls
        return DLataset(
            self.dataset.interleave(
                tf.data.Dataset.from_tensor_slices,
                cycle_length=cycle,
                num_parallel_calls=num_parallel_calls,
            )
        )

    def repeat(self, count: int | None = None) -> DLataset:
        return DLataset(self.dataset.repeat(count))

    def shuffle(self, buffer_size: int, seed: int | None = None) -> DLataset:
        return DLataset(self.dataset.shuffle(buffer_size, seed=seed))

    def take(self, count: int) -> DLataset:
        return DLataset(self.dataset.take(count))

    def iterator(self) -> Iterator[Any]:
        """Elements as nested dicts of numpy arrays."""
        return self.dataset.as_numpy_iterator()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.dataset)

    @property
    def element_spec(self) -> Any:
        return self.dataset.element_spec
