# Recipes run inside .venv; `./dev <recipe>` bootstraps it first.
set shell := ["bash", "-euo", "pipefail", "-c"]

data := "data/hmdb51"
shards := "shards"
run := "runs/demo"
# The demo trains with one loader worker and one torch thread: on 2 cores, torch's default of 2 threads plus the
# worker oversubscribe them (an epoch took 130 s instead of 27 s on a shared 2-core machine).
one_thread := "OMP_NUM_THREADS=1"

default: demo

# Install the project with its dev tools into the current Python (./dev does this before any recipe, after
# installing FFmpeg and chromium from apt and creating .venv).
setup:
    python -m pip install -e ".[dev]"

# The demo's data: a synthetic HMDB51-shaped tree and its split-1 shards (both resume: a rerun only checks).
demo-data:
    lsvit-pipeline synth --out {{data}} --scale 0.5
    lsvit-pipeline extract --data-root {{data}} --split 1 --out {{shards}}

# The whole path on the embedded default: synth -> extract -> eda -> train -> predict (two test clips).
demo: demo-data
    lsvit-pipeline eda --shards {{shards}}/split1 --out reports/eda
    rm -rf {{run}}  # each demo trains afresh
    {{one_thread}} lsvit-train --shards {{shards}} --config configs/demo.yaml --out {{run}}
    # the first test clip (flag 2 in split 1: never trained on) of walk and of laugh
    clip() { echo "{{data}}/$1/$(awk '$2 == 2 {print $1; exit}' "{{data}}/testTrainMulti_7030_splits/$1_test_split1.txt")"; }; \
      lsvit-predict --checkpoint {{run}}/best.pt "$(clip walk)" "$(clip laugh)"
    @echo "reports: reports/eda/  run (metrics, curves.png, confusion.png, checkpoints): {{run}}/"

# The frame-averaged ViT (no SMIF, no LMI) trained like the demo on the same shards: motion is what it lacks.
demo-baseline: demo-data
    rm -rf {{run}}-frameavg
    {{one_thread}} lsvit-train --shards {{shards}} --config configs/demo.yaml --model vit_frameavg_tiny_patch16_224 --out {{run}}-frameavg

# Export the demo run to ONNX and predict a clip with onnxruntime (after `just demo`).
onnx:
    lsvit-export --checkpoint {{run}}/best.pt
    lsvit-predict --model {{run}}/best.onnx "$(find {{data}} -name '*.avi' | sort | head -n 1)"

# Serve the demo run as a web app on http://127.0.0.1:7860 (after `just demo`; Ctrl-C stops it).
webdemo *args:
    lsvit-demo --checkpoint {{run}}/best.pt {{args}}

# The whole CPU suite, slow tests included (GPU tests skip themselves without CUDA).
test *args:
    python -m pytest {{args}}

# Quick iteration: skips tests marked slow.
test-fast *args:
    python -m pytest -m "not slow" {{args}}

# Benchmarks against in-run baselines; each prints its ratios.
bench:
    python bench/extract.py
    python bench/loader.py
    python bench/model.py
    python bench/export.py
    python bench/model_zoo.py
    python bench/train.py

# Training frame sampling (uniform, random, stride) side by side on the demo config; needs the demo's shards.
bench-sampling *args:
    python bench/frame_sampling.py --config configs/demo.yaml {{args}}

# On a machine with a package index: the wheels and .deb files gpu-check installs offline (gpu/prepare.py;
# pass the target's facts: `python3 gpu/check.py --probe > target.json` there, then `just gpu-prepare --probe target.json`).
gpu-prepare *args:
    python gpu/prepare.py {{args}}

# On a GPU machine, offline: install from .whl/ and .deb/, run every CUDA path, write reports/gpu-check.md
# (without just: python3 gpu/check.py).
gpu-check *args:
    python3 gpu/check.py {{args}}

lint:
    ruff check .
    ruff format --check .
