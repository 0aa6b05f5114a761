"""``grounded-sam demo``, ``eval`` and ``train-demo``: the embedded model's job, its proof and its recipe."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from grounded_sam.cli.app import app, configure_logging, console, pipeline_or_exit, shown
from grounded_sam.cli.options import DetectorOption, DeviceOption, OutFolderOption, SamOption, VerboseOption
from grounded_sam.data import Scene, SceneConfig, make_scene
from grounded_sam.text.demo_clip import phrase_words
from grounded_sam.text.prompts import parse_prompt

if TYPE_CHECKING:
    import numpy as np

    from grounded_sam.evaluation import ScoredDetections


@app.command()
def demo(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What to find.")] = "red circle",
    out: OutFolderOption = Path("demo-out"),
    image: Annotated[Path | None, typer.Option(help="Use this image instead of a generated scene.")] = None,
    seed: Annotated[int, typer.Option(help="First seed tried for a scene that holds the prompt.")] = 92,
    device: DeviceOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run text → masks on the embedded demo model: writes result_overlay.png, the masks (result_labels.png,
    result_mask_*.png) and result.json to OUT."""
    configure_logging(verbose)
    from grounded_sam.demo import build_demo_pipeline
    from grounded_sam.export import save_result
    from grounded_sam.io import load_image

    if image is None:
        scene_seed, scene = _scene_showing(prompt, seed, SceneConfig(min_objects=4, max_objects=6))
        pixels = scene.image
        console.print(f"scene {scene_seed}: {shown(', '.join(scene.labels))}")
    else:
        pixels = load_image(image)
    start = time.perf_counter()
    pipeline = build_demo_pipeline(device=device)
    result = pipeline.predict(pixels, prompt)
    elapsed = time.perf_counter() - start
    written = []
    for format in ("overlay", "png", "json"):
        written += save_result(result, out, format, stem="result", image=pixels)  # type: ignore[arg-type]
    title = f"{shown(repr(prompt))}: {len(result)} found"
    table = Table("label", "score", "mask IoU (predicted)", "area", "box", title=title)
    for item in result:
        box = ", ".join(f"{v:.0f}" for v in item.box)
        iou = f"{item.shown_mask_score:.2f}"  # clipped to [0, 1]; the raw value is in result.json
        table.add_row(shown(item.label), f"{item.score:.2f}", iou, str(item.area), box)
    console.print(table)
    console.print(f"{elapsed:.2f} s (models loaded and run); wrote {len(written)} files to {shown(out)}")


def _scene_showing(prompt: str, seed: int, config: SceneConfig) -> tuple[int, Scene]:
    """The first generated scene from ``seed`` on with an object the prompt names (else scene ``seed``)."""
    wanted = [phrase_words(phrase) for phrase in parse_prompt(prompt)]
    for candidate in range(seed, seed + 200):
        scene = make_scene(candidate, config)
        if any(words and words <= phrase_words(label) for words in wanted for label in scene.labels):
            return candidate, scene
    return seed, make_scene(seed, config)


@app.command("eval")
def evaluate(
    scenes: Annotated[int, typer.Option(help="Held-out generated scenes (ignored with --coco).")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the held-out scenes (training uses others).")] = 1000,
    coco: Annotated[Path | None, typer.Option(help="A COCO instances json to evaluate on instead.")] = None,
    images: Annotated[Path | None, typer.Option(help="The images folder of --coco.")] = None,
    sam: SamOption = None,
    detector: DetectorOption = None,
    device: DeviceOption = None,
    broad: Annotated[
        bool, typer.Option(help='Also ask broad phrases ("green shape", "triangle") of generated scenes.')
    ] = True,
) -> None:
    """Box-prompt mask mIoU, and text-prompt precision / recall / mIoU, on scenes with ground truth.

    The text-prompt figures are given at the detector's box threshold and, from the same run, at other
    thresholds (precision / recall by threshold and the best recall at precision >= 0.90). On generated
    scenes the broad phrases of each (a colour with "shape", a shape alone; see ``broad_phrases``) are
    asked too: a part of an object returned as an instance of its own is a false positive there.
    """
    from grounded_sam.data import iter_scenes
    from grounded_sam.evaluation import box_prompt_miou, load_coco_scenes, score_text_prompts

    if coco is not None:
        if images is None:
            raise typer.BadParameter("--coco needs --images, the folder its file names are relative to")
        data = load_coco_scenes(coco, images)
    else:
        data = list(iter_scenes(seed, scenes))
    pipeline = pipeline_or_exit(sam, detector, device)
    default = getattr(pipeline.detector, "box_threshold", None)
    # Other thresholds come from filtering one run's scores, which holds while those scores are the
    # detector's own (no relabelling CLIP).
    curve = sorted({*CURVE_THRESHOLDS, default}) if default is not None and pipeline.labeler is None else []
    lowest = curve[0] if curve else None
    start = time.perf_counter()
    box_miou = box_prompt_miou(pipeline.predictor, data)
    scored = score_text_prompts(
        lambda image, phrases: pipeline.predict(image, phrases, box_threshold=lowest), data
    )
    text = scored.at(default)
    at = f" (box threshold {default:g})" if default is not None else ""
    table = Table("metric", "value", title=f"{len(data)} scenes ({time.perf_counter() - start:.1f} s)")
    table.add_row("box-prompt mask mIoU", f"{box_miou:.3f}")
    table.add_row(f"text-prompt precision{at}", f"{text.precision:.3f}")
    table.add_row(f"text-prompt recall{at}", f"{text.recall:.3f}")
    table.add_row(f"text-prompt matched-mask mIoU{at}", f"{text.miou:.3f}")
    if broad and coco is None:
        wide = _broad_scores(
            lambda image, phrases: pipeline.predict(image, phrases, box_threshold=lowest), data
        )
        for name, value in zip(("precision", "recall"), _pair(wide.at(default)), strict=True):
            table.add_row(f"broad phrases: {name}{at}", f"{value:.3f}")
    console.print(table)
    if curve:
        _print_curve(scored, curve, default)
        if broad and coco is None:
            _print_curve(wide, curve, default, "broad phrases by threshold")


def _broad_scores(predict: Callable[[np.ndarray, list[str]], Any], data: list[Scene]) -> ScoredDetections:
    """Detections of each scene's broad phrases, matched to every instance a phrase names."""
    from grounded_sam.evaluation import broad_phrases, score_text_prompts

    def names(phrase: str, label: str) -> bool:
        return phrase_words(phrase) <= phrase_words(label)

    return score_text_prompts(predict, data, lambda scene: broad_phrases(scene.labels), covers=names)


def _pair(metrics: Any) -> tuple[float, float]:
    return metrics.precision, metrics.recall


CURVE_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)


def _print_curve(
    scored: ScoredDetections,
    thresholds: list[float],
    default: float,
    title: str = "text prompts by threshold",
) -> None:
    """Precision / recall / mIoU by box threshold, and the best recall at precision >= 0.90."""
    table = Table("box threshold", "precision", "recall", "mask mIoU", title=title)
    best: tuple[float, float] | None = None
    for threshold in thresholds:
        metrics = scored.at(threshold)
        mark = " (default)" if threshold == default else ""
        values = (metrics.precision, metrics.recall, metrics.miou)
        table.add_row(f"{threshold:g}{mark}", *(f"{value:.3f}" for value in values))
        if metrics.precision >= 0.9 and (best is None or metrics.recall >= best[1]):  # ties: higher threshold
            best = (threshold, metrics.recall)
    console.print(table)
    if best is None:
        console.print("no threshold reaches precision 0.90")
    else:
        console.print(f"best recall at precision >= 0.90: {best[1]:.3f} (box threshold {best[0]:g})")


@app.command("train-demo")
def train_demo(
    out: Annotated[Path, typer.Option(help="Run folder (checkpoints, logs, weights).")] = Path("runs"),
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run.")] = False,
) -> None:
    """Train the embedded SAM and CLIP from scratch (the recipe that made the shipped weights)."""
    import torch

    from grounded_sam.train.__main__ import main as train_main

    sam_out = out / "demo_sam"
    status = train_main(["sam", "--out", str(sam_out), *(["--resume"] if resume else [])])
    # CLIP learns from the masks this SAM draws, as the text stage will show them to it. It has the
    # machine to itself: one data worker, the other threads for the model. On 2 cores a step takes
    # 0.63 s so, against 0.73 s with both threads on the model and the data made between steps.
    clip_args = [
        "--sam-weights",
        str(sam_out / "demo_sam.safetensors"),
        "--threads",
        str(max(torch.get_num_threads() - 1, 1)),
        "--data-workers",
        "1",
    ]
    clip_args += [] if resume else ["--no-resume"]
    status = status or train_main(["clip", "--out", str(out / "demo_clip"), *clip_args])
    raise typer.Exit(status)
