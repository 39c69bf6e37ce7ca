"""Several nodes on one machine: `openvla pretrain` as 2 nodes × 1 process (two torchrun agents meeting through the
c10d rendezvous on 127.0.0.1, as the README's multi-node command does on real hosts), against 1 node × 2 processes.

With 2 nodes FSDP runs hybrid-sharded (a 2 × 1 mesh: 2 replicas, each sharded over its node's 1 process); on one
node it fully shards over 2 processes. Same global ranks, same per-rank data streams, same global batch: the losses
and the final weights must agree, and both write the same checkpoint layout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_faults import REPO_ROOT, build_workspace, history, stage_args

pytestmark = pytest.mark.slow  # four training processes, ~1 min on a 2-core machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), OPENVLA_TRACKING="off")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _files(run_dir: Path) -> list[str]:
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = {"shuffle_buffer": 16, "num_parallel_calls": 1, "num_parallel_reads": 1}
    pretrain = {"nproc": 2, "strategy": "fsdp", "steps": 3, "batch_size": 4, "save_every": 1, "keep_last": 3,
                "lr": 1e-3, "schedule": "constant", "warmup_steps": 0, "cpu_threads": 1}  # fmt: skip
    ws = build_workspace(tmp_path_factory.mktemp("multinode"), data, pretrain)
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    port = _free_port()
    start = time.perf_counter()
    nodes = []
    for rank in (0, 1):  # two agents: what `torchrun … --node-rank <0|1>` on two hosts does
        cmd = [*torchrun, "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1", "--rdzv-backend",
               "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"multinode-{port}", "--local-addr",
               "127.0.0.1", "-m", "stages.pretrain", *stage_args(ws, "nodes2")]  # fmt: skip
        nodes.append(subprocess.Popen(cmd, cwd=ws, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))  # fmt: skip
    logs = [node.communicate(timeout=300)[0] for node in nodes]
    wall_nodes = time.perf_counter() - start
    for node, log in zip(nodes, logs, strict=True):
        assert node.returncode == 0, log[-4000:]
    start = time.perf_counter()
    single = subprocess.run([*torchrun, "--standalone", "--nproc-per-node", "2", "-m", "stages.pretrain",
                             *stage_args(ws, "node1")], cwd=ws, env=_env(), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    wall_single = time.perf_counter() - start
    assert single.returncode == 0, single.stderr[-4000:]
    return {"ws": ws, "logs": logs, "single": single.stderr, "wall": (wall_nodes, wall_single)}


def test_two_nodes_train_hybrid_sharded_with_one_nodes_checkpoint_layout(layouts: dict):
    from openvla.train.checkpoint import load_weights, read_meta

    ws = layouts["ws"]
    assert all("mesh (2, 1)" in log for log in layouts["logs"])  # hybrid: 2 replicas × 1 shard
    assert "mesh (2,)" in layouts["single"]  # one node: full shard over 2 processes
    nodes2, node1 = ws / "nodes2" / "runs", ws / "node1" / "runs"
    assert _files(nodes2) == _files(node1)
    assert (nodes2 / "latest").read_text().strip() == "checkpoints/step-000003"
    for step in (1, 3):
        meta = read_meta(nodes2 / "checkpoints" / f"step-{step:06d}")
        assert meta["world_size"] == 2 and meta["data"]["frames_per_rank"] == [2 * step, 2 * step]
    first = load_weights(nodes2 / "checkpoints" / "step-000001")
    last = load_weights(nodes2 / "checkpoints" / "step-000003")
    moved = max(float((last[k] - first[k]).abs().max()) for k in first)
    assert moved > 1e-4  # it trained


def test_two_nodes_give_the_losses_and_weights_of_one_node_with_two_processes(layouts: dict):
    from openvla.train.checkpoint import load_weights

    ws = layouts["ws"]
    nodes2, node1 = history(ws / "nodes2" / "runs"), history(ws / "node1" / "runs")
    print(f"\n2 nodes × 1 process (hybrid): losses {[round(nodes2[s], 6) for s in sorted(nodes2)]}, "
          f"wall {layouts['wall'][0]:.1f} s\n1 node × 2 processes (full shard): losses "
          f"{[round(node1[s], 6) for s in sorted(node1)]}, wall {layouts['wall'][1]:.1f} s")  # fmt: skip
    assert sorted(nodes2) == sorted(node1) == [1, 2, 3]
    for step in nodes2:
        assert nodes2[step] == pytest.approx(node1[step], rel=1e-5, abs=1e-6), step
    a = load_weights(ws / "nodes2" / "runs" / "checkpoints" / "step-000003")
    b = load_weights(ws / "node1" / "runs" / "checkpoints" / "step-000003")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=f"parameter {key} differs")
