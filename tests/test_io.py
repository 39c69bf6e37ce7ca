"""Atomic writes: a failure leaves the previous output intact and no temporary files behind."""

from __future__ import annotations

import pytest

from openvla.io import atomic_directory, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "stats.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.json"]


def test_atomic_directory_success_replaces_previous(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "old.bin").write_text("old")
    with atomic_directory(out) as tmp:
        (tmp / "new.bin").write_text("new")
        assert not (out / "new.bin").exists()  # invisible until the block succeeds
    assert sorted(p.name for p in out.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_atomic_directory_failure_keeps_previous_and_cleans_up(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.safetensors").write_text("good")
    with pytest.raises(ValueError), atomic_directory(out) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise ValueError("crash mid-write")
    assert (out / "model.safetensors").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_atomic_directory_gets_normal_directory_permissions(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask
