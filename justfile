# Recipes run inside .venv; `./dev <recipe>` bootstraps it first.
set shell := ["bash", "-euo", "pipefail", "-c"]

data := "data/hmdb51"
shards := "shards"
run := "runs/demo"

default: demo

# Install the project with its dev tools into the current Python (./dev does this before any recipe, after
# installing FFmpeg and chromium from apt and creating .venv).
setup:
    python -m pip install -e ".[dev]"

# The whole path on the embedded default: synth -> extract -> eda -> train -> predict.
demo:
    lsvit-pipeline synth --out {{data}} --scale 0.1
    lsvit-pipeline extract --data-root {{data}} --split 1 --out {{shards}}
    lsvit-pipeline eda --shards {{shards}}/split1 --out reports/eda
    lsvit-train --shards {{shards}} --config configs/demo.yaml --out {{run}}
    lsvit-predict --checkpoint {{run}}/best.pt "$(find {{data}} -name '*.avi' | sort | head -n 1)"
    @echo "reports: reports/eda/  run (metrics, curves.png, confusion.png, checkpoints): {{run}}/"

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

# Training frame sampling (uniform, random, stride) side by side on the demo config; needs the demo's shards.
bench-sampling *args:
    python bench/frame_sampling.py --config configs/demo.yaml {{args}}

lint:
    ruff check .
    ruff format --check .
