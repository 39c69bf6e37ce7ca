"""Start a stage under ``torchrun`` when it was called directly with more than one process configured.

``dvc.yaml`` launches pretraining with ``torchrun --standalone --nproc-per-node ${pretrain.nproc} -m
stages.pretrain …``; a user typing ``openvla pretrain`` with ``pretrain.nproc: 2`` gets the same thing: the
command re-executes itself as ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m <module>
<args>`` and returns its exit status. Inside torchrun (``RANK`` set) nothing happens, which is also how a
multi-node job runs: start torchrun on every node yourself (see the README's training section).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence

log = logging.getLogger(__name__)


def env_rank() -> int:
    """This process's global rank as the launcher set it (0 outside torchrun), before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def torchrun_command(nproc: int, module: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", module,
            *args]  # fmt: skip


def relaunch_under_torchrun(nproc: int, module: str, args: Sequence[str]) -> int | None:
    """Run ``module`` under torchrun with ``nproc`` processes and return its exit code; None when this process
    should do the work itself (already under torchrun, or one process)."""
    if nproc < 1:
        raise ValueError(f"nproc must be ≥ 1, got {nproc}")
    if "RANK" in os.environ or nproc == 1:
        return None
    cmd = torchrun_command(nproc, module, args)
    log.info("relaunching under torchrun: %s", " ".join(cmd))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(cmd, env=env, check=False).returncode
