#!/usr/bin/env bash
# Crossmix set-up on a fresh Debian/Ubuntu machine, then run the app or the tests.
#
#   bash scripts/setup.sh app  [SONG...]   install everything, then open the app
#   bash scripts/setup.sh test [PYTEST ARGS] install everything, then run the test suite
#   bash scripts/setup.sh install            install everything only
#
# Idempotent: Debian packages are installed only when missing; the .venv is created once;
# pip runs again only when pyproject.toml or the constraints changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-app}
[ $# -gt 0 ] && shift

# ffmpeg: mp3/m4a/ogg decode + export; libportaudio2: playback; festival + voices, fluidsynth +
# GM soundfont: the synthetic singing corpus / demo library (espeak-ng: only the evaluation-only
# voice set, never training); rubberband-cli: time-stretch;
# xvfb + xcb libs: the Qt window on a virtual screen (screenshots, headless machines).
APT_PACKAGES=(
  ffmpeg libsndfile1 libportaudio2
  festival festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph
  festvox-suopuhe-lj festvox-suopuhe-mv festvox-kallpc16k festvox-kdlpc16k festvox-italp16k festvox-itapc16k
  flite festvox-ca-ona-hts espeak-ng
  fluidsynth fluid-soundfont-gm rubberband-cli sox
  xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0
  libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libegl1 libgl1 libfontconfig1 libdbus-1-3
  libglib2.0-0
)

log() { printf '\033[1mcrossmix setup:\033[0m %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
PY=${PYTHON:-python3}
if ! "$PY" -c "import venv, ensurepip" 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
STAMP=.venv/.crossmix-installed
# The tests also need the scale extra (Ray Data, pyarrow: 'library add --engine ray'); the
# app does not, so the desktop install stays without it.
EXTRAS="dev"
if [ "$MODE" = "test" ]; then EXTRAS="dev,scale"; fi
WANT=$( (cat pyproject.toml scripts/constraints.txt; grep -n 'pip install' scripts/setup.sh; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  # torch first, pinned: an unpinned torch would pull several GB of CUDA packages.
  log "installing torch (pinned) and the Python packages"
  "$VPY" -m pip install -q --disable-pip-version-check "$(grep '^torch==' scripts/constraints.txt)"
  "$VPY" -m pip install -q --disable-pip-version-check -c scripts/constraints.txt -e ".[$EXTRAS]"
  # resemblyzer only for the GE2E weights inside its wheel (core/embedding/ge2e.py reads pretrained.pt
  # without importing the package): --no-deps, since its declared 'webrtcvad' builds from
  # source and its 'typing' is an obsolete backport. The tests compare with resemblyzer's
  # own code, which imports webrtcvad: webrtcvad-wheels (in the dev extra) provides it.
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps -c scripts/constraints.txt "resemblyzer==0.1.4"
  echo "$WANT" > "$STAMP"
fi

# Shipped material that is built rather than committed (demo library etc.).
if [ -f scripts/build_assets.py ]; then
  "$VPY" scripts/build_assets.py
fi

case "$MODE" in
  app)     exec "$ROOT/.venv/bin/crossmix" "$@" ;;
  test)    exec "$VPY" -m pytest "$@" ;;
  install) log "done. Start the app with .venv/bin/crossmix" ;;
  *) echo "usage: bash scripts/setup.sh [app|test|install] [args...]" >&2; exit 2 ;;
esac
