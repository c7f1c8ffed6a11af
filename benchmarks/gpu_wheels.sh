#!/usr/bin/env sh
# Wheels the lent GPU machines lack (pure Python, and isal's small binary wheel), for the device tool's `carry`:
#   sh benchmarks/gpu_wheels.sh            # here, once: fills .whl/
# then, on the device (carry: [".whl"]), in one command:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:. python3 benchmarks/gpu.py --out "$OUT"
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
    diffusers==0.42.1 bottle==0.13.4 cheroot==11.1.2 jaraco.functools more-itertools \
    dataclasses-json==0.6.7 marshmallow==3.26.2 torchsde==0.2.6 trampoline importlib-metadata peft==0.21.2 psutil \
    isal==1.9.1 prometheus-client==0.26.0 pyyaml==6.0.4
ls .whl
