"""End-to-end wall time of `dvc repro` from a fresh clone, stage by stage.

Clones the repository (its committed HEAD) into a temporary directory, reuses this checkout's `.venv` (a fresh
`scripts/setup.sh` adds its install time, ≈ 5–7 min here), and runs `dvc repro --force --single-item <stage>` for
every stage of `dvc.yaml` in pipeline order, so that each stage is timed on its own and nothing comes from a DVC cache.
`--force` matters: training is deterministic, so the exported model comes out bit-identical to the committed
`dvc.lock`, and DVC would skip `eval-libero`, whose outputs are committed to git. Prints one
row per stage (seconds, minutes) and the total, then the headline metrics of the run (LIBERO success, held-out L1).

    python bench/repro.py                                 # the shipped embedded default (≈ 20 min on 2 cores)
    python bench/repro.py --set demos.num_demos=4 --set demos.max_attempts=8 --set pretrain.steps=20 \\
        --set finetune.steps=5 --set eval_libero.episodes_per_task=2   # a quick smoke run of the whole chain
    python bench/repro.py --stages demos convert stats    # only these (they must not depend on skipped stages)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from table import machine  # bench/table.py (bench/ is on sys.path when a bench script runs)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _set_params(params_file: Path, assignments: list[str]) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to params.yaml, as `dvc exp run -S` would."""
    params = yaml.safe_load(params_file.read_text())
    for item in assignments:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section not in params or name not in params[section]:
            raise SystemExit(f"--set {item}: params.yaml has no key {key!r}")
        params[section][name] = yaml.safe_load(value)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def _headline(clone: Path) -> dict[str, object]:
    """The numbers a reader wants after a run: LIBERO success and the offline held-out error."""
    out: dict[str, object] = {}
    libero = clone / "metrics" / "libero.json"
    if libero.is_file():
        m = json.loads(libero.read_text())
        out["libero"] = f"{m['successes']}/{m['episodes']} (95% CI {m['ci95_low']:.2f}–{m['ci95_high']:.2f})"
    bridge = clone / "metrics" / "bridge.json"
    if bridge.is_file():
        out["held-out normalized L1"] = round(json.loads(bridge.read_text())["l1_normalized"], 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a param")
    parser.add_argument("--stages", nargs="*", help="stages to run (default: all of dvc.yaml, in order)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)

    venv = REPO_ROOT / ".venv"
    if not (venv / "bin" / "dvc").is_file():
        raise SystemExit(f"{venv}: no virtual environment; run `bash scripts/setup.sh` first")
    stages = list(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])
    chosen = args.stages or stages
    unknown = sorted(set(chosen) - set(stages))
    if unknown:
        raise SystemExit(f"--stages: unknown {unknown}; dvc.yaml has {stages}")

    tmp = Path(tempfile.mkdtemp(prefix="openvla-repro-"))
    clone = tmp / "openvla-pipeline"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(venv)
    if args.set:
        _set_params(clone / "params.yaml", args.set)
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(clone),  # the clone's code, not this checkout's editable install
        "DVC_NO_ANALYTICS": "1",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2"),
    }
    rows: list[tuple[str, float]] = []
    log_path = tmp / "repro.log"
    try:
        with log_path.open("w") as log:
            for stage in [s for s in stages if s in chosen]:
                start = time.perf_counter()
                print(f"running {stage} …", file=sys.stderr, flush=True)
                subprocess.run(
                    [str(venv / "bin" / "dvc"), "repro", "--force", "--single-item", stage],
                    cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, check=True,
                )  # fmt: skip
                rows.append((stage, time.perf_counter() - start))
    except subprocess.CalledProcessError:
        print(f"a stage failed; its output is in {log_path}", file=sys.stderr)
        raise SystemExit(1) from None
    total = sum(seconds for _, seconds in rows)
    print("| stage | seconds | minutes |\n|---|---|---|")
    for stage, seconds in [*rows, ("**total**", total)]:
        print(f"| {stage} | {seconds:.0f} | {seconds / 60:.1f} |")
    for key, value in _headline(clone).items():
        print(f"{key}: {value}")
    if args.keep:
        print(f"clone kept at {clone} (log {log_path})")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
