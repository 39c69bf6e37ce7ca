"""Compare model options on the embedded LIBERO task at the same budget: the same demos, statistics, tokenizer,
seeds, steps and held-out episodes; only the options named per variant change.

Each variant runs the training half of the pipeline on this checkout's data (``data/rlds``, ``data/stats``,
``data/tokenizer``, made by ``dvc repro``): pretrain → finetune → export → eval-libero → eval-bridge, into
``runs/ablation/<variant>/`` (its own params file, run directories, model, metrics and plots; MLflow experiment
``openvla-ablation``). Prints one row per variant: LIBERO success with its 95% interval, the held-out normalized L1
and gripper accuracy, and the wall time of every stage.

    python bench/ablation.py one_camera: \\
        two_cameras:data.cameras=[primary,wrist] \\
        two_cameras_film:data.cameras=[primary,wrist],model.film=true
    python bench/ablation.py --table-only one_camera two_cameras two_cameras_film   # print the finished runs

A variant is ``name:key=value,key=value`` (values parsed as YAML; a list value keeps its commas inside brackets).
Run one variant at a time on a quiet machine: the stages use both cores.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from table import machine, print_rows  # bench/table.py (bench/ is on sys.path when a bench script runs)

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_ROOT = REPO_ROOT / "runs" / "ablation"
STAGES = ("pretrain", "finetune", "export", "eval-libero", "eval-bridge")


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    """``name:a.b=1,c.d=[x,y]`` → (name, {"a.b": 1, "c.d": ["x", "y"]})."""
    name, _, rest = text.partition(":")
    overrides: dict[str, object] = {}
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", rest):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SystemExit(f"{text!r}: expected key=value, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def write_params(variant: str, overrides: dict[str, object], out_dir: Path) -> Path:
    """params.yaml with the variant's overrides (unknown keys are an error) and its own MLflow experiment/model."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    overrides = {"project.name": "openvla-ablation", "export.name": variant, **overrides}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in params or name not in params[section]:
            raise SystemExit(f"{variant}: params.yaml has no key {key!r}")
        params[section][name] = value
    path = out_dir / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stage_commands(out: Path, params: Path, variant: str) -> dict[str, list[str]]:
    exe = str(Path(sys.executable).with_name("openvla"))
    common = ["--params", str(params)]
    data = ["--data-dir", "data/rlds", "--statistics", "data/stats/dataset_statistics.json"]
    model_dir = str(out / "models" / f"{variant}-hf")
    return {
        "pretrain": [exe, "pretrain", *data, "--tokenizer-dir", "data/tokenizer", "--run-dir", str(out / "pretrain"),
                     "--metrics", str(out / "pretrain.json"), "--plots-dir", str(out / "plots" / "pretrain"), *common],
        "finetune": [exe, "finetune", *data, "--tokenizer-dir", "data/tokenizer", "--pretrain-dir",
                     str(out / "pretrain"), "--run-dir", str(out / "finetune"), "--metrics", str(out / "finetune.json"),
                     "--plots-dir", str(out / "plots" / "finetune"), *common],
        "export": [exe, "export", "--source", str(out / "finetune" / "merged"), "--models-dir", str(out / "models"),
                   "--metrics", str(out / "export.json"), *common],
        "eval-libero": [exe, "eval-libero", "--model-dir", model_dir, "--metrics", str(out / "libero.json"),
                        "--plots-dir", str(out / "plots" / "libero"), *common],
        "eval-bridge": [exe, "eval-bridge", "--model-dir", model_dir, "--data-dir", "data/rlds", "--metrics",
                        str(out / "bridge.json"), "--plots-dir", str(out / "plots" / "bridge"), *common],
    }  # fmt: skip


def run_variant(variant: str, overrides: dict[str, object]) -> None:
    out = OUT_ROOT / variant
    out.mkdir(parents=True, exist_ok=True)
    params = write_params(variant, overrides, out)
    times: dict[str, float] = {}
    for name, cmd in stage_commands(out, params, variant).items():
        print(f"[{variant}] {name}: {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO_ROOT, check=True)
        times[name] = round(time.perf_counter() - start, 1)
        (out / "times.json").write_text(json.dumps(times, indent=2))


def row(variant: str) -> dict[str, object]:
    out = OUT_ROOT / variant
    libero = json.loads((out / "libero.json").read_text())
    bridge = json.loads((out / "bridge.json").read_text())
    times = json.loads((out / "times.json").read_text())
    overrides = yaml.safe_load((out / "params.yaml").read_text())
    return {
        "variant": variant,
        "cameras": ",".join(overrides["data"]["cameras"]),
        "film": overrides["model"]["film"],
        "success": f"{libero['successes']}/{libero['episodes']}",
        "95% CI": f"{libero['ci95_low']:.2f}–{libero['ci95_high']:.2f}",
        "held-out L1": f"{bridge['l1_normalized']:.4f}",
        "gripper acc": f"{bridge.get('gripper_accuracy', float('nan')):.3f}",
        **{f"{stage} s": times.get(stage, "") for stage in STAGES},
    }


def print_table(variants: list[str]) -> None:
    print_rows([row(v) for v in variants])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="name:key=value,... (see above)")
    parser.add_argument("--table-only", action="store_true", help="print the table of finished variants")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    parsed = [parse_variant(v) for v in args.variants]
    if not args.table_only:
        for name, overrides in parsed:
            run_variant(name, overrides)
    print_table([name for name, _ in parsed])


if __name__ == "__main__":
    main()
