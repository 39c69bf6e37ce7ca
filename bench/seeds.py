"""The embedded default's headline over several training seeds: one `dvc exp run` per seed, then the table.

Every seed is ``dvc exp run --temp -n seed-<s> -S pretrain.seed=<s> -S finetune.seed=<s>`` on this checkout's
committed state: the demos, RLDS, statistics and tokenizer come from the DVC cache (they do not depend on the
training seed), pretrain → finetune → export → eval-libero → eval-libero-blind → eval-bridge run anew. The committed
params' seed is not rerun: its row is HEAD's metrics (stage times from `runs/seeds/seed-<s>.times.json` when
present). Prints one row per seed — LIBERO success per task and on average (with its 95% interval), the
language-blind baseline (`eval-libero-blind`), the held-out normalized L1, the wall time of every stage that ran —
then the mean, min and max of the average success over the seeds.

    python bench/seeds.py                      # seeds 7 (the default's), 1, 2
    python bench/seeds.py --seeds 7 1 2 3
    python bench/seeds.py --table-only         # the table of finished `seed-<s>` experiments
    python bench/seeds.py --set model.film=true --name film   # a candidate recipe on every seed, 7 included

A candidate (``--set``, passed to every ``dvc exp run`` as ``-S``) runs every seed, the committed one too, as
experiments ``<name>-seed-<s>``: one seed of a recipe says little (seeds of one recipe spread by up to 40 points).

Run it on a quiet machine: the stages use both cores, and the stage times are part of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from table import machine, print_rows  # bench/table.py (bench/ is on sys.path when a bench script runs)

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMED_STAGES = (
    "demos", "convert", "stats", "bins", "pretrain", "finetune", "export", "eval-libero", "eval-libero-blind",
    "eval-bridge",
)  # fmt: skip


def _env() -> dict[str, str]:
    bin_dir = str(REPO_ROOT / ".venv" / "bin")
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}


def committed_seed() -> int:
    """The training seed of the committed params.yaml (its results are HEAD's metrics)."""
    import yaml

    text = subprocess.run(
        ["git", "show", "HEAD:params.yaml"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    params = yaml.safe_load(text.stdout)
    return int(params["pretrain"]["seed"]) if params["pretrain"]["seed"] == params["finetune"]["seed"] else -1


def experiment_name(seed: int, prefix: str = "") -> str:
    """``seed-<s>`` for the committed recipe, ``<prefix>-seed-<s>`` for a candidate."""
    return f"{prefix}-seed-{seed}" if prefix else f"seed-{seed}"


def run_seed(seed: int, overrides: list[str] | None = None, prefix: str = "") -> dict[str, float]:
    """Run the experiment of one seed, streaming its output; the wall seconds of every stage that ran.

    ``overrides`` (``key=value``, as ``dvc exp run -S`` takes them) make a candidate recipe: then the committed seed
    runs too, since HEAD's metrics are not the candidate's."""
    overrides = list(overrides or [])
    name = experiment_name(seed, prefix)
    if seed == committed_seed() and not overrides:
        print(f"[{name}] the committed default's seed: its results are HEAD's (`dvc repro`)", flush=True)
        return {}
    cmd = ["dvc", "exp", "run", "--temp", "-n", name, "-S", f"pretrain.seed={seed}", "-S", f"finetune.seed={seed}"]
    for override in overrides:
        cmd += ["-S", override]
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    times: dict[str, float] = {}
    current, started = None, time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        match = re.match(r"Running stage '([\w-]+)'", line)
        if match:
            now = time.perf_counter()
            if current is not None:
                times[current] = now - started
            current, started = match.group(1), now
    if current is not None:
        times[current] = time.perf_counter() - started
    if proc.wait() != 0:
        raise SystemExit(f"[{name}] dvc exp run failed with exit code {proc.returncode}")
    (REPO_ROOT / "runs" / "seeds").mkdir(parents=True, exist_ok=True)
    (REPO_ROOT / "runs" / "seeds" / f"{name}.times.json").write_text(json.dumps(times, indent=2))
    return times


def experiment_file(name: str, path: str) -> dict | None:
    """A metrics file as committed in the experiment ``name`` (the newest of that name); None if it has none."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--sort=-committerdate", "--format=%(refname)", "refs/exps"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    ref = next((r for r in refs if r.rsplit("/", 1)[-1] == name), None)
    if ref is None and name == f"seed-{committed_seed()}":
        ref = "HEAD"
    if ref is None:
        raise SystemExit(f"no experiment named {name!r}; run it first (without --table-only)")
    text = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=REPO_ROOT, capture_output=True, text=True)
    return json.loads(text.stdout) if text.returncode == 0 else None


def seed_row(seed: int, prefix: str = "") -> dict[str, object]:
    name = experiment_name(seed, prefix)
    libero = experiment_file(name, "metrics/libero.json")
    bridge = experiment_file(name, "metrics/bridge.json")
    blind = experiment_file(name, "metrics/libero_blind.json")
    times_file = REPO_ROOT / "runs" / "seeds" / f"{name}.times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    row: dict[str, object] = {"seed": seed}
    for suite, entry in libero["suites"].items():
        for task, t in entry["tasks"].items():
            row[f"{suite.removeprefix('libero_')} t{task}"] = f"{t['successes']}/{t['episodes']}"
    row["average"] = f"{100 * libero['success_rate']:.1f}%"
    row["95% CI"] = f"{100 * libero['ci95_low']:.0f}–{100 * libero['ci95_high']:.0f}%"
    if blind is not None:
        row["blind"] = f"{100 * blind['success_rate']:.1f}%"
    row["held-out L1"] = f"{bridge['l1_normalized']:.4f}"
    row["ep/min"] = f"{libero['episodes_per_minute']:.1f}"
    row.update({f"{s} min": f"{times[s] / 60:.1f}" for s in TIMED_STAGES if s in times})
    row["_rate"] = libero["success_rate"]
    return row


def print_table(seeds: list[int], prefix: str = "") -> None:
    rows = [seed_row(s, prefix) for s in seeds]
    print_rows(rows)
    rates = np.array([r["_rate"] for r in rows]) * 100
    print(f"\naverage success over {len(rows)} seeds: mean {rates.mean():.1f}%, min {rates.min():.1f}%, "
          f"max {rates.max():.1f}% (std {rates.std(ddof=1) if len(rates) > 1 else 0.0:.1f} points)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 1, 2], help="training seeds (default 7 1 2)")
    parser.add_argument("--table-only", action="store_true", help="print the table of finished experiments")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml override for every seed (repeatable): a candidate recipe")  # fmt: skip
    parser.add_argument("--name", default="", help="experiment name prefix of a candidate (required with --set)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    if args.overrides and not args.name:
        parser.error("--set needs --name: the candidate's experiments must not take the default's names")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"--set takes KEY=VALUE, got {bad}")
    if not args.table_only:
        for seed in args.seeds:
            run_seed(seed, args.overrides, args.name)
    print_table(args.seeds, args.name)


if __name__ == "__main__":
    main()
