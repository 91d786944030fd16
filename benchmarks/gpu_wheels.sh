#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels that minialex needs on the GPU machine and that its image
# lacks. That machine has no package registry: the folder travels with the working tree (the `carry` list of
# the device call, see benchmarks/README.md) and benchmarks/gpu_check.sh installs it from there.
#
#   pooch        minialex.data.download (the download tests), with its one missing need, platformdirs
#
# The versions are the ones this repository's tests run with. Both are pure Python (py3-none-any), so
# the platform flags only tell pip which interpreter they are for: the machine's python3 is 3.12 on x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(pooch==1.9.0 platformdirs==4.14.9)
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
# One version of each package, or the install on the GPU machine stops.
for spec in "${WHEELS[@]}"; do
    name=${spec%%==*}
    count=$(find .whl -maxdepth 1 -iname "${name}-*.whl" | wc -l)
    if [[ $count -ne 1 ]]; then
        echo "gpu_wheels: expected one ${name} wheel in .whl/, found ${count}" >&2
        exit 1
    fi
done
du -sh .whl
ls -l .whl
