#!/usr/bin/env bash
# The main job, end to end, on a board that needs no hardware: set up, train and compile the sine
# model, generate a project, build it, flash it and run host-driven inference on it.
# The board is the emulated Cortex-M4F (QEMU mps2_an386); BOARD=host uses a native executable instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

OUT=${OUT:-out/demo}
BOARD=${BOARD:-mps2_an386}
PLATFORM=$(python3 -c "from project_api.boards import get_board; print(get_board('$BOARD').platform)")
mkdir -p "$OUT"

set -x
python3 examples/sine/make_sine_model.py -o "$OUT/sine.onnx"
tvmc compile "$OUT/sine.onnx" -o "$OUT/sine.tar" --output-format mlf --executor aot --model-name sine
tvmc micro create -f "$OUT/project" "$OUT/sine.tar" "$PLATFORM" --project-option board="$BOARD" project_type=host_driven
tvmc micro build -f "$OUT/project" "$PLATFORM"
tvmc micro flash "$OUT/project" "$PLATFORM"
python3 -c "import numpy as np, math; np.savez('$OUT/inputs.npz', x=np.array([[math.pi / 2]], np.float32))"
tvmc run --device micro "$OUT/project" --inputs "$OUT/inputs.npz" --outputs "$OUT/outputs.npz" --print-time --repeat 3 --number 10
set +x
python3 -c "import numpy as np, math; y = np.load('$OUT/outputs.npz'); k = list(y.keys())[0]; print(f'sine model on $BOARD: sin(pi/2) ~= {float(y[k].ravel()[0]):.4f} (exact 1.0)')"
