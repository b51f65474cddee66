#!/usr/bin/env bash
# Builds the GPU image (deploy/Dockerfile.gpu: TensorFlow with CUDA from pip) from a Debian base
# with podman, then checks inside it that TensorFlow is a CUDA build with its CUDA and cuDNN
# libraries loadable, that every Keras backend the image has imports, and that the ktsweep
# commands run. Needs no GPU (on a machine with one, it also lists the GPUs TensorFlow sees).
#
# Not part of CI: the CUDA wheels are about 3 GB. Run from anywhere as root, after
# deploy/compose-e2e.sh has cached the base image:  bash deploy/gpu-image-check.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KTSWEEP_CI_CACHE:-$HOME/.cache/ktsweep-ci}"
image=localhost/ktsweep:gpu-check
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {
    echo "gpu-image-check: FAILED: $*" >&2
    exit 1
}

export CONTAINERS_CONF="$repo/deploy/podman-containers.conf"

if ! podman image exists localhost/debian:bookworm; then
    [ -s "$cache/debian-bookworm.tar" ] ||
        fail "no cached base image: run deploy/compose-e2e.sh once first"
    podman import "$cache/debian-bookworm.tar" localhost/debian:bookworm >/dev/null
fi

echo "==> wheels (the image's requirements with tensorflow[and-cuda])"
python3 -c 'import sys; assert sys.version_info[:2] == (3, 11)' ||
    fail "the wheels are chosen by the host's python3, which must be 3.11 like the image's"
tensorflow="$(sed -n 's/^ARG TENSORFLOW="\(.*\)"$/\1/p' "$repo/deploy/Dockerfile.gpu")"
[ -n "$tensorflow" ] || fail "deploy/Dockerfile.gpu names no ARG TENSORFLOW"
python3 -c "import tomllib; print('\n'.join(d for d in tomllib.load(open('$repo/pyproject.toml', 'rb'))['project']['dependencies'] if not d.startswith('tensorflow-cpu')))" \
    >"$work/requirements.txt"
echo "$tensorflow" >>"$work/requirements.txt"
mkdir -p "$cache/wheels-gpu"
python3 -m pip wheel --quiet --wheel-dir "$cache/wheels-gpu" --find-links "$cache/wheels" \
    -r "$work/requirements.txt" pip "setuptools>=69" wheel >"$work/pip-wheel.log" 2>&1 || {
    grep -v "^WARNING: Location" "$work/pip-wheel.log" | tail -20
    fail "could not fetch the GPU image's wheels (log above)"
}
du -sh "$cache/wheels-gpu"

echo "==> build $image"
started=$SECONDS
podman build --build-arg BASE_IMAGE=localhost/debian:bookworm --build-arg PIP_FIND_LINKS=/wheels \
    -v "$cache/wheels-gpu:/wheels:ro" -f "$repo/deploy/Dockerfile.gpu" -t "$image" "$repo" \
    >"$work/build.log" 2>&1 || {
    tail -40 "$work/build.log"
    fail "the GPU image did not build (log above)"
}
echo "built in $((SECONDS - started)) s; size: $(podman image inspect "$image" --format '{{.Size}}' |
    awk '{printf "%.1f GB", $1 / 1e9}')"

echo "==> checks inside the image"
podman run --rm -i "$image" python - <<'PY' || fail "the GPU image's checks failed (above)"
import ctypes
import importlib
import pathlib
import subprocess

import tensorflow as tf

info = tf.sysconfig.get_build_info()
print(f"TensorFlow {tf.__version__}: CUDA build {tf.test.is_built_with_cuda()}, "
      f"CUDA {info.get('cuda_version')}, cuDNN {info.get('cudnn_version')}")
assert tf.test.is_built_with_cuda(), "TensorFlow in the GPU image is not a CUDA build"
# The CUDA libraries come as pip wheels (nvidia-*): each must load, or TensorFlow falls back to
# the CPU on a GPU machine.
import nvidia  # noqa: E402  (a namespace package: the nvidia-* wheels)

roots = [pathlib.Path(path) for path in nvidia.__path__]
for name in ("libcudart.so.12", "libcublas.so.12", "libcudnn.so.9"):
    paths = sorted(path for root in roots for path in root.rglob(name))
    assert paths, f"{name} is not in the image"
    ctypes.CDLL(str(paths[0]))
    print(f"loads {paths[0]}")
print("GPUs TensorFlow sees here:", tf.config.list_physical_devices("GPU"))
import keras  # noqa: E402

print(f"Keras {keras.__version__} on {keras.backend.backend()}")
for module in ("ktsweep.worker", "ktsweep.callbacks", "ktsweep.service.app"):
    importlib.import_module(module)
subprocess.run(["ktsweep", "--help"], check=True, capture_output=True)
subprocess.run(["ray", "--version"], check=True)
print("gpu-image-check: OK")
PY
