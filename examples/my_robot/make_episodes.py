"""Stand-in for your robot's recordings: two-camera episodes in the pipeline's ``.npz`` format.

Each episode is a scripted reach-and-grasp toward a red block on a grey table: the third-person camera (``image``)
sees the block and the gripper, the wrist camera (``wrist_image``) sees the block grow as the gripper approaches.
``state`` is the end-effector position (3) + orientation (3) + gripper opening (1); ``action`` the 7-D command
(xyz / rpy deltas, gripper 1 = open, 0 = closed), the convention of OpenVLA's shipped dataset configs.

Replace this stage with your own recordings: one ``episode_XXXX.npz`` per episode with these keys (README, "Your
robot, end to end").

    python make_episodes.py --out data/raw/my_robot --episodes 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

INSTRUCTION = "pick up the red block"


def _square(image: np.ndarray, centre: tuple[float, float], half: int, colour: tuple[int, int, int]) -> None:
    """Paint a filled square of side 2·half around ``centre`` (x, y in [0, 1] of the image), clipped at the edges."""
    height, width = image.shape[:2]
    x, y = int(centre[0] * (width - 1)), int(centre[1] * (height - 1))
    image[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1] = colour


def make_episode(rng: np.random.Generator, steps: int, primary_size: int, wrist_size: int) -> dict[str, np.ndarray]:
    """One episode: the gripper moves toward the block (proportional control, a little noise) and closes on it."""
    block = rng.uniform(0.25, 0.75, size=2)
    position = np.array([*rng.uniform(0.1, 0.9, size=2), 0.3])
    orientation = np.zeros(3)
    gripper = 1.0
    images, wrists, states, actions = [], [], [], []
    for _ in range(steps):
        error = np.array([block[0] - position[0], block[1] - position[1], -position[2]])
        delta = np.clip(0.35 * error + rng.normal(0, 0.005, 3), -0.08, 0.08)
        gripper = 0.0 if np.linalg.norm(error) < 0.05 else 1.0
        primary = np.full((primary_size, primary_size, 3), 110, np.uint8)
        _square(primary, tuple(block), max(2, primary_size // 16), (200, 30, 30))
        _square(primary, tuple(position[:2]), max(1, primary_size // 32), (30, 30, 30) if gripper else (30, 160, 30))
        wrist = np.full((wrist_size, wrist_size, 3), 90, np.uint8)
        offset = 0.5 + (block - position[:2]) * 2.0
        _square(wrist, (float(np.clip(offset[0], 0, 1)), float(np.clip(offset[1], 0, 1))),
                int(2 + (0.35 - position[2]) * wrist_size / 3), (200, 30, 30))  # fmt: skip
        images.append(primary)
        wrists.append(wrist)
        states.append(np.concatenate([position, orientation, [gripper]]))
        actions.append(np.concatenate([delta, np.zeros(3), [gripper]]))
        position = position + delta
    return {
        "image": np.stack(images),
        "wrist_image": np.stack(wrists),
        "state": np.asarray(states, np.float32),
        "action": np.asarray(actions, np.float32),
        "language_instruction": np.array(INSTRUCTION),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/raw/my_robot"))
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--primary-size", type=int, default=96, help="third-person camera, pixels")
    parser.add_argument("--wrist-size", type=int, default=64, help="wrist camera, pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for index in range(args.episodes):
        episode = make_episode(rng, args.steps, args.primary_size, args.wrist_size)
        np.savez_compressed(args.out / f"episode_{index:04d}.npz", **episode)
    print(f"wrote {args.episodes} episodes to {args.out}")


if __name__ == "__main__":
    main()
