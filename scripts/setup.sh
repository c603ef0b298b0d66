#!/usr/bin/env bash
# Installs everything microtvm-projects needs on a fresh Debian machine: the cross toolchains and
# emulators (apt) and the Python package with its test extra (pip). Safe to run again: it installs
# only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages. --no-install-recommends matters: libnewlib-arm-none-eabi otherwise pulls in a
# 1.5 GB C++ library.
APT_PACKAGES=(
  gcc make                                       # host board and native runs
  gcc-arm-none-eabi libnewlib-arm-none-eabi      # Cortex-M firmware
  qemu-system-arm                                # emulated Cortex-M boards
  clang libclang-rt-14-dev                       # libFuzzer + sanitizers for the device runtime
  cmake ninja-build                              # the Zephyr template's build-tool checks
  gcc-avr avr-libc arduino-builder arduino-core-avr   # offline Arduino AVR builds
  simavr libsimavr-dev                           # the emulated Arduino Mega (our UART bridge links libsimavr)
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
# wheel: tests build our wheel offline (pip wheel --no-build-isolation) with the installed setuptools.
"$PYTHON" -m pip install -q --disable-pip-version-check wheel -e ".[test]"
echo "setup: done ($("$PYTHON" -c 'import tvm; print("apache-tvm", tvm.__version__)'))"
