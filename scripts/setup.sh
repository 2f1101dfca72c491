#!/usr/bin/env bash
# Installs what building, running and testing kvs-infer needs on a fresh Debian machine
# with Rust. Idempotent: every step checks first and does nothing when its part is there.
#   - Debian packages: FFmpeg's -dev libraries (libavcodec/libavformat, for decoding),
#     clang (bindgen for ffmpeg-sys), pkg-config, ffmpeg (test clips), python3-venv.
#   - A Python venv in .cache/venv with the packages our scripts use (onnx).
#   - ONNX Runtime's shared library from the `onnxruntime` PyPI wheel, in
#     .cache/onnxruntime/, where the server finds it by itself.
#   - On a GPU host (nvidia-smi present) and with --test: NVRTC from the
#     nvidia-cuda-nvrtc-cu12 wheel in .cache/cuda/lib. The server compiles its kernels
#     for the GPU present with it; the tests compile every kernel with it (no GPU
#     needed).
#   - With --test: gst-rtsp-server with python3-gi and the GStreamer
#     parsers/payloaders (a real RTSP server for the RTSP tests), NVIDIA's decoder
#     headers (libffmpeg-nvenc-dev, to check the NVDEC binding against), moto[server] in
#     the venv (a local AWS for the publisher tests), and promtool (from Debian's
#     prometheus package, unpacked into .cache/tools/ rather than installed, so no
#     Prometheus daemon is set up).
# Used by scripts/demo.sh and scripts/test.sh; safe to run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

FOR_TESTS=0
[ "${1:-}" = "--test" ] && FOR_TESTS=1

ORT_VERSION=1.32.0
ONNX_VERSION=1.20.0
CACHE=.cache

log() { printf '[setup] %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 || { log "error: cargo is required (install Rust with rustup)"; exit 1; }

# --- Debian packages ------------------------------------------------------------------
APT_PACKAGES=(libavcodec-dev libavformat-dev libavutil-dev libclang-dev clang pkg-config ffmpeg python3 python3-venv)
# Tests: an RTSP server (gst-rtsp-server through Debian's own python3 and gi), and
# NVIDIA's decoder headers (MIT, headers only) to check our NVDEC binding against.
[ "$FOR_TESTS" = 1 ] && APT_PACKAGES+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad libffmpeg-nvenc-dev)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A python3 outside Debian's packages (pyenv, say) with a working venv module will do.
have_venv=0
command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' 2>/dev/null && have_venv=1
to_install=()
for pkg in "${missing[@]}"; do
    if [ "$have_venv" = 1 ] && { [ "$pkg" = python3 ] || [ "$pkg" = python3-venv ]; }; then
        continue
    fi
    to_install+=("$pkg")
done
if ((${#to_install[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing Debian packages: ${to_install[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${to_install[@]}" >/dev/null
fi

# --- Python venv for the project's scripts ----------------------------------------------
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import onnx" 2>/dev/null; then
    log "installing onnx==$ONNX_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "onnx==$ONNX_VERSION"
fi

# --- ONNX Runtime shared library ---------------------------------------------------------
ORT_DIR="$CACHE/onnxruntime"
if [ ! -f "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
    log "fetching libonnxruntime.so.$ORT_VERSION from the onnxruntime wheel"
    tmp=$(mktemp -d)
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: "onnxruntime==$ORT_VERSION" -d "$tmp"
    mkdir -p "$ORT_DIR"
    "$VENV/bin/python" - "$tmp" "$ORT_DIR" "$ORT_VERSION" <<'PY'
import glob, sys, zipfile
tmp, out, version = sys.argv[1:]
wheel = glob.glob(f"{tmp}/onnxruntime-*.whl")[0]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z, open(f"{out}/libonnxruntime.so.{version}", "wb") as f:
    f.write(z.read(name))
PY
    rm -rf "$tmp"
fi
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"

# --- moto, the local AWS server the publisher tests run against -------------------------
MOTO_VERSION=5.2.5
if [ "$FOR_TESTS" = 1 ] && ! "$VENV/bin/python" -c "import moto, flask" 2>/dev/null; then
    log "installing moto[server]==$MOTO_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# --- promtool, for the tests of deploy/prometheus/alerts.yml -----------------------------
if [ "$FOR_TESTS" = 1 ] && ! command -v promtool >/dev/null 2>&1 && [ ! -x "$CACHE/tools/promtool" ]; then
    log "unpacking promtool from Debian's prometheus package into $CACHE/tools"
    tmp=$(mktemp -d)
    chmod 777 "$tmp"
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    mkdir -p "$CACHE/tools"
    cp "$tmp/x/usr/bin/promtool" "$CACHE/tools/promtool"
    rm -rf "$tmp"
fi

# --- NVRTC: the tests compile every CUDA kernel with it (no GPU needed), and on a GPU
# host the server compiles its kernels for the GPU present with it --------------------
NVRTC_VERSION=12.8.93
WANT_NVRTC=$FOR_TESTS
command -v nvidia-smi >/dev/null 2>&1 && WANT_NVRTC=1
if [ "$WANT_NVRTC" = 1 ] && [ ! -f "$CACHE/cuda/lib/libnvrtc.so.12" ]; then
    log "fetching NVRTC $NVRTC_VERSION from the nvidia-cuda-nvrtc-cu12 wheel into $CACHE/cuda/lib"
    tmp=$(mktemp -d)
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: "nvidia-cuda-nvrtc-cu12==$NVRTC_VERSION" -d "$tmp"
    mkdir -p "$CACHE/cuda/lib"
    "$VENV/bin/python" - "$tmp" "$CACHE/cuda/lib" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1:]
wheel = glob.glob(f"{tmp}/nvidia_cuda_nvrtc_cu12-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        # libnvrtc finds its builtins next to itself ($ORIGIN).
        if base.startswith(("libnvrtc.so", "libnvrtc-builtins.so")):
            with open(os.path.join(out, base), "wb") as f:
                f.write(z.read(name))
PY
    rm -rf "$tmp"
fi

log "ok"
