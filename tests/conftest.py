"""Shared test fixtures: repository paths, the team's shared real data, and an isolated MLflow store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# One intra-op thread per process: the test models are tiny, so torch's thread pool costs more than it gives,
# and multi-process tests (FSDP with 2 ranks) would otherwise oversubscribe a 2-core CI machine. Set before any
# test imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MALLOC_ARENA_MAX", "2")


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (a fresh clone of the repository does not have ../shared)")
    return path


@pytest.fixture
def bridge_data_dir() -> Path:
    """TFDS data dir holding the real 25-episode BridgeData debug set (`bridge_dataset/1.0.0`)."""
    return shared_path("bridge_dataset", "1.0.0").parent.parent


@pytest.fixture
def llama2_tokenizer_path() -> Path:
    """The real Llama-2 SentencePiece model (32,000 pieces)."""
    return shared_path("llama2-tokenizer", "tokenizer.model")


@pytest.fixture(scope="module", autouse=True)
def free_module_temp_dirs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the temporary folders a test module made once the module is done, unless one of its tests failed.

    Why: the suite writes about 3 GB of checkpoints, exports and RLDS shards, and pytest keeps every folder until
    the session ends. A CI machine with little free disk then fails the later modules on writes. This keeps the
    peak at the largest single module (a few hundred MB). A failing module keeps its folders for debugging.
    """
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        return
    for path in set(base.iterdir()) - before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test logs to its own throwaway SQLite MLflow store, never to the repository's."""
    root = tmp_path_factory.mktemp("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root
