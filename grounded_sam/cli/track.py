"""``grounded-sam track``: follow what a text prompt names through a video, with SAM 2's video model."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from grounded_sam.cli.app import (
    EXIT_FAILED,
    EXIT_USAGE,
    app,
    configure_logging,
    console,
    flag_message,
    interruptible,
    progress_bar,
    shown,
)
from grounded_sam.cli.options import (
    BoxThresholdOption,
    DetectorOption,
    DeviceOption,
    OutFolderOption,
    TextThresholdOption,
    VerboseOption,
)
from grounded_sam.naming import safe_component

FORMATS_HELP = (
    "Comma-separated outputs: png (id masks per frame), mot (txt), coco (json), video (overlay mp4)."
)


NEEDS_SAM2 = (
    "track needs SAM 2's video model, which is not embedded in the package (the demo model has no video "
    "memory): download one once, e.g. `hf download facebook/sam2.1-hiera-tiny --local-dir "
    "~/.cache/grounded_sam/sam2.1-hiera-tiny`, then pass --sam2 sam2.1_hiera_tiny (or the folder)."
)


@dataclass
class _TrackSummary:
    label: str
    first: int
    last: int
    frames: int = 0
    score: float = 0.0


@app.command()
@interruptible
def track(
    video: Annotated[Path, typer.Argument(help="A video file or a folder of frame images.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help='Phrases, e.g. "person. car".')],
    out: OutFolderOption = Path("out"),
    detect_every: Annotated[int, typer.Option(help="Run the detector every this many frames.", min=1)] = 30,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.", min=1)] = None,
    formats: Annotated[str, typer.Option("--format", "-f", help=FORMATS_HELP)] = "png,mot,coco,video",
    sam2: Annotated[
        str | None, typer.Option(help="SAM 2 model name (e.g. sam2.1_hiera_tiny) or model folder.")
    ] = None,
    detector: DetectorOption = None,
    box_threshold: BoxThresholdOption = None,
    text_threshold: TextThresholdOption = None,
    max_lost: Annotated[int, typer.Option(help="Drop a track after this many empty frames.", min=1)] = 30,
    memory_frames: Annotated[
        int | None, typer.Option(help="SAM 2 memory frames kept (default: all the model reads).", min=1)
    ] = None,
    fps: Annotated[float | None, typer.Option(help="Frame rate of a frame folder (default 30).")] = None,
    device: DeviceOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Track the objects PROMPT names through VIDEO; write masks, MOT rows, COCO-video JSON and an overlay.

    Needs a SAM 2 download (--sam2; no video model is embedded in the package)."""
    configure_logging(verbose)
    from grounded_sam.text.prompts import parse_prompt
    from grounded_sam.video import VideoTracker, open_track_writers

    chosen = _chosen_formats(formats)
    frames = _frames_or_exit(video, fps)
    model, processor, text_stage = _models(sam2, detector, device)
    tracker = VideoTracker(
        model,
        processor,
        text_stage,
        detect_every=detect_every,
        max_memory_frames=memory_frames,
        max_lost_frames=max_lost,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
    )
    phrases = parse_prompt(prompt)
    if not phrases:
        raise typer.BadParameter(f"{prompt!r} holds no phrase", param_hint="--prompt")
    writers = open_track_writers(
        out,
        chosen,
        name=safe_component(video.stem if frames.kind == "video" else video.name),
        fps=frames.fps,
        size=frames.size,
        phrases=phrases,
        frame_names=[p.name for p in frames.files] or None,
    )
    console.print(f"prompt: {shown(phrases)}  video: {frames.size[1]}x{frames.size[0]} at {frames.fps:g} fps")
    start = time.perf_counter()
    summary, done = _track_frames(tracker, frames, phrases, writers, max_frames)
    _print_summary(summary, done, time.perf_counter() - start, out)


def _chosen_formats(formats: str) -> list[str]:
    """The formats of ``--format`` (comma-separated), or a usage error naming the ones there are."""
    from grounded_sam.video import TRACK_FORMATS

    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(TRACK_FORMATS))
    if unknown or not chosen:
        raise typer.BadParameter(
            f"choose from {', '.join(TRACK_FORMATS)}; got {formats!r}", param_hint="--format"
        )
    return chosen


def _frames_or_exit(video: Path, fps: float | None) -> Any:
    from grounded_sam.video import open_frames

    try:
        return open_frames(video, fps=fps)
    except (OSError, ValueError) as error:
        console.print(f"[red]{shown(error)}")
        raise typer.Exit(EXIT_USAGE) from error


def _track_frames(
    tracker: Any, frames: Any, phrases: list[str], writers: Any, max_frames: int | None
) -> tuple[dict[int, _TrackSummary], int]:
    """Track through the frames (at most `max_frames`) under a progress bar, writing each frame's
    tracks; returns each track's summary and the number of frames done. A failure stops the command
    with exit status 1 (the writers keep no partial file)."""
    total = min(filter(None, (frames.frame_count, max_frames)), default=None)
    summary: dict[int, _TrackSummary] = {}
    start = time.perf_counter()
    done = 0
    try:
        with writers, progress_bar() as bar:
            task = bar.add_task("track", total=total, rate="")
            for index, tracks in tracker.track(itertools.islice(frames, max_frames), phrases):
                writers.write(index, tracks)
                _add_to_summary(summary, index, tracks)
                done = index + 1
                bar.update(task, advance=1, rate=f"{done / (time.perf_counter() - start):.2f} frames/s")
    except (OSError, ValueError) as error:
        stopped = f"[red]stopped at frame {done}: {shown(error)}[/red]"
        console.print(f"{stopped} (no partial output files were kept)")
        raise typer.Exit(EXIT_FAILED) from error
    return summary, done


def _models(sam2: str | None, detector: str | None, device: str | None) -> tuple[Any, Any, Any]:
    """SAM 2's video model and processor, and the detector the default pipeline uses."""
    from grounded_sam.api import default_pipeline
    from grounded_sam.sam2.build import build_sam2_video

    name, folder = (None, sam2) if sam2 and Path(sam2).expanduser().exists() else (sam2, None)
    try:
        model, processor = build_sam2_video(name, folder, device=device)
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]{shown(flag_message(error, '--sam2'))}")
        console.print(NEEDS_SAM2)
        raise typer.Exit(EXIT_USAGE) from error
    try:
        text_stage = default_pipeline(None, detector, device).detector
    except (OSError, ValueError, ImportError) as error:
        console.print(f"[red]{shown(flag_message(error, '--detector'))}")
        raise typer.Exit(EXIT_USAGE) from error
    return model, processor, text_stage


def _add_to_summary(summary: dict[int, _TrackSummary], index: int, tracks: Any) -> None:
    for obj_id, label, score in zip(tracks.ids, tracks.result.labels, tracks.result.scores, strict=True):
        entry = summary.setdefault(int(obj_id), _TrackSummary(label, index, index))
        entry.last, entry.frames, entry.score = index, entry.frames + 1, entry.score + float(score)


def _print_summary(summary: dict[int, _TrackSummary], frames: int, seconds: float, out: Path) -> None:
    table = Table("track", "label", "first frame", "last frame", "frames seen", "mean score")
    for obj_id, entry in sorted(summary.items()):
        table.add_row(
            str(obj_id),
            shown(entry.label),
            str(entry.first),
            str(entry.last),
            str(entry.frames),
            f"{entry.score / max(entry.frames, 1):.2f}",
        )
    console.print(table)
    rate = frames / seconds if seconds > 0 else 0.0
    console.print(
        f"{len(summary)} tracks over {frames} frames in {seconds:.1f} s ({rate:.2f} frames/s) -> {shown(out)}"
    )
