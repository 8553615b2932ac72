"""``lsvit-demo``: a Gradio app over a checkpoint or an exported ONNX file.

Upload a video (or click an example clip), see the frames the model sampled with their source frame
numbers, the top-k P(action | clip) and the clip's facts. The same prediction is an HTTP API
(``/predict``, see the README) through Gradio's own API layer. Prediction goes through the predictor's
shared input path (`lsvit.trainer.inference`), so the app gives what ``lsvit-predict`` prints for the
same file: uploads and examples reach the model byte for byte (the input is a file, converted by nothing).
"""

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer import synthetic, videos
from lsvit.trainer.inference import ClipPredictor
from lsvit.trainer.videos import expand_videos

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check: offline
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
import gradio as gr  # after the variables above

VIDEO_SUFFIXES = videos.VIDEO_SUFFIXES


def training_examples(config: dict[str, Any], k: int = 4) -> tuple[list[Path], str]:
    """Up to ``k`` test clips (distinct classes) of the data a model was trained on, when on disk.

    Reads the metadata of the first test shard of the run's ``shards``/``split`` and keeps clips whose
    source file still exists under the index's ``data_root``.

    Args:
        config: The checkpoint's training config.
        k: Clips wanted.

    Returns:
        The clips, and a note saying where they came from or why there are none.
    """
    from lsvit.pipeline.eda import read_metadata
    from lsvit.pipeline.shardindex import is_url, read_index, resolve_split_dir

    shards = config.get("shards")
    if k < 1 or not shards or is_url(shards):
        return [], "no examples (pass --examples FILE)"
    try:
        index = read_index(resolve_split_dir(Path(shards), config.get("split")))
        first = [s for s in index.data["shards"] if s["subset"] == "test"][:1]
        rows = read_metadata(dataclasses.replace(index, data={**index.data, "shards": first}))
    except LsvitError as e:
        return [], f"no examples from the training data ({e}); pass --examples FILE"
    root = Path(index.config.get("data_root", ""))
    clips: dict[str, Path] = {}
    for row in sorted(rows, key=lambda r: (r.get("class", ""), r.get("clip", ""))):
        path = root / str(row.get("clip", ""))
        if row.get("class") not in clips and path.is_file():
            clips[row["class"]] = path
    picked = [clips[c] for c in sorted(clips)][:k]
    if not picked:
        return [], f"no examples: the test clips of {index.where} are not under {root}; pass --examples FILE"
    return picked, f"{len(picked)} test clips of {index.where}"


def expand_examples(paths: list[Path]) -> list[Path]:
    """Files as given, folders as the video files inside them (recursively, sorted).

    Raises:
        LsvitError: A path that does not exist, or a folder without videos.
    """
    return expand_videos(paths, "--examples")


def build_app(predictor: ClipPredictor, examples: list[Path], top_k: int = 5, source: str = "") -> gr.Blocks:
    """The Gradio app; the caller launches it (with ``allowed_paths`` = the examples).

    Args:
        predictor: A checkpoint or ONNX predictor.
        examples: Clips offered as examples.
        top_k: Classes shown.
        source: What the model was loaded from, for the page header.

    Returns:
        The app, with the API endpoint ``/predict`` (a video file -> top-k label, frames, facts).
    """

    synth = synthetic.info(getattr(predictor, "synthetic", None))

    def predict(path: str | None) -> tuple[dict[str, float], list, dict[str, Any]]:
        if not path:
            raise gr.Error("choose a video file first, then press Predict")
        name, t0 = Path(path).name, time.perf_counter()
        try:
            clip = predictor.prepare(path)
        except LsvitError as e:  # the app keeps serving; the reason goes to the page and to the log
            print(f"error: {name}: {e}", file=sys.stderr, flush=True)
            raise gr.Error(f"{name}: {e}", duration=None, print_exception=False) from e
        pred = predictor.predict_clip(clip)
        repeats = len(clip.pick) - clip.padded
        gallery = [
            (frame, f"frame {idx}" + (" (repeat: clip too short)" if i >= repeats else ""))
            for i, (frame, idx) in enumerate(zip(clip.source_frames(), clip.indices, strict=True))
        ]
        facts = {"video": name, **clip.facts(), "seconds": round(time.perf_counter() - t0, 3)}
        if synth is not None and not synthetic.is_synthetic_clip(path):
            facts["note"] = synthetic.note(synth).removeprefix("note: ")
        return dict(pred.top(top_k)), gallery, facts

    header = (
        f"### lsvit: P(action | clip)\n{source} · {len(predictor.classes)} classes · "
        f"{predictor.num_frames} frames sampled uniformly over the clip · "
        f"{getattr(predictor, 'img_size', '?')} px centre crop"
    )
    if synth is not None:  # said on the page and, for every clip that is not synthetic, in its facts
        header += f"\n\n**Trained on synthetic data ({synthetic.describe(synth)})**: its predictions on real video mean nothing."
    # Uploads and frame images pile up in Gradio's cache: every hour, drop those older than a day.
    with gr.Blocks(title="lsvit demo", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        gr.Markdown(header)
        with gr.Row():
            with gr.Column() as left:
                # A file input, not gr.Video: the browser cannot play most AVIs (HMDB51's DivX), and
                # gr.Video would flag them "not playable" or, for examples, re-encode them to H.264.
                video = gr.File(label="Video (any format FFmpeg reads)", type="filepath", elem_id="video")
                button = gr.Button("Predict", variant="primary", elem_id="predict")
            with gr.Column():
                label = gr.Label(num_top_classes=top_k, label=f"Top-{top_k} P(action | clip)", elem_id="top")
                facts = gr.JSON(label="Clip", elem_id="facts", open=True, max_height=260)
        gallery = gr.Gallery(
            label="Sampled frames (source frame numbers)", columns=8, height="auto", elem_id="frames"
        )
        outputs = [label, gallery, facts]
        button.click(predict, [video], outputs, api_name="predict")
        if examples:
            with left:  # under the upload, now that the outputs exist
                gr.Examples(
                    [[str(p)] for p in examples],
                    [video],
                    outputs,
                    fn=predict,
                    run_on_click=True,
                    cache_examples=False,
                    label="Examples (click to predict)",
                    example_labels=[f"{p.parent.name}/{p.name}" for p in examples],
                )
    return app


def serve(
    app: gr.Blocks,
    host: str,
    port: int,
    examples: list[Path] = (),
    max_file_size: str | None = "500mb",
    block: bool = True,
) -> str:
    """Starts the server (never a share link).

    Args:
        app: From :func:`build_app`.
        host: Interface to listen on (``127.0.0.1``: this machine only).
        port: TCP port.
        examples: The example files (Gradio serves only these from outside its cache).
        max_file_size: Upload limit (Gradio's syntax, e.g. ``500mb``).
        block: Serve until interrupted; False returns once it listens (tests).

    Returns:
        The local URL.

    Raises:
        LsvitError: The port is taken or the address unusable.
    """
    try:
        _, url, _ = app.queue(default_concurrency_limit=1).launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=True,
            max_file_size=max_file_size,
            allowed_paths=[str(p) for p in examples],
            footer_links=["api", "settings"],
            quiet=True,  # not Gradio's "set share=True" advice: this app never makes a public link
            css="#frames .grid-wrap { min-height: 0; }",  # the gallery as tall as its frames, no blank band
        )
    except OSError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LsvitError(f"cannot listen on {host}:{port} ({first[:160]}); pass another --port") from e
    print(f"serving {url} (Ctrl-C stops it); HTTP API: {url}?view=api", file=sys.stderr, flush=True)
    if block:
        try:
            app.block_thread()
        finally:
            app.close()
    return url
