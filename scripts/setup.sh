#!/usr/bin/env bash
# Install hintpose and everything it needs into ./.venv. Safe to run again: a second run only
# checks what is there and reuses the mmcv wheel built by the first (cached per torch version).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
pipi() { "$VPY" -m pip install --disable-pip-version-check -q "$@"; }

echo "[setup] python packages (requirements.txt)"
pipi wheel
pipi -r requirements.txt

# mmcv 2.1.0 (the release mmdet 3.3.0 supports) has no wheel for this torch: build it once with
# its compiled ops and keep the wheel. torch 2.14's headers need C++20, mmcv's setup.py asks for
# C++14/17, hence the flag edit. Its setup.py needs setuptools < 70 (pkg_resources as it was):
# that one lives in a throw-away folder put first on the build's PYTHONPATH, so .venv keeps the
# pinned setuptools and pip's resolver never sees two versions.
MMCV_VERSION=2.1.0
TORCH_VERSION=$("$VPY" -c "import torch; print(torch.__version__.split('+')[0])")
CACHE=${HINTPOSE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hintpose/wheels/torch-$TORCH_VERSION}
if ! "$VPY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
  wheel=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    echo "[setup] building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION (about 10 minutes, once)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    pipi --no-deps --target "$build/tools" "setuptools<70"
    tools="$build/tools${PYTHONPATH:+:$PYTHONPATH}"
    PYTHONPATH="$tools" "$VPY" -m pip download --disable-pip-version-check -q --no-deps --no-build-isolation \
      --no-binary :all: \
      "mmcv==$MMCV_VERSION" -d "$build"
    tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV_VERSION/setup.py"
    mkdir -p "$CACHE"
    (cd "$build/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
      PYTHONPATH="$tools" "$OLDPWD/$VPY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps . -w "$CACHE")
    wheel=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -1)
  fi
  echo "[setup] installing $(basename "$wheel")"
  pipi --no-deps --force-reinstall "$wheel"
fi
pipi --no-deps mmengine==0.10.7 mmdet==3.3.0
pipi --no-deps -e .
"$VPY" -c "import torch, torchvision, mmcv.ops, mmdet, mmengine, pycocotools, dvc, hintpose" \
  || { echo "[setup] FAILED: the installed packages do not import (see above)"; exit 1; }
echo "[setup] ready: .venv (torch $TORCH_VERSION, mmcv $MMCV_VERSION with ops, mmdet 3.3.0)"
