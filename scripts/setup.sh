#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install everything the pipeline and the
# tests need, including the LIBERO simulator and the system libraries of its software renderer.
# Idempotent: a second run only re-installs when pyproject.toml changed (a stamp file holds its hash).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Mesa's software renderer for headless MuJoCo (EGL / OSMesa) and ffmpeg-free video writing needs nothing else.
if command -v apt-get >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri libosmesa6 >/dev/null
    else
        echo "warning: libOSMesa missing and not root; install libegl1 libgl1-mesa-dri libosmesa6 for LIBERO rendering" >&2
    fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch and torchvision first and exactly pinned, so nothing later can pull another (CUDA) build.
    "$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
    "$VENV/bin/python" -m pip install -q -e ".[sim,dev]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi

# DVC needs a git repository (dvc exp); analytics stay off.
if [ ! -d .dvc ]; then
    "$VENV/bin/dvc" init -q
fi
"$VENV/bin/dvc" config --local core.analytics false >/dev/null 2>&1 || true
echo "environment ready: $VENV"
