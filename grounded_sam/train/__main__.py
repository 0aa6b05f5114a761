"""Command line: ``python -m grounded_sam.train sam [--steps N] [--out DIR] [--seed S] [--resume]``.

``sam`` trains the embedded demo SAM on generated scenes, checkpointing to ``DIR/last.pt`` and writing
``DIR/demo_sam.safetensors`` at the end; ``clip`` hands over to :mod:`grounded_sam.train.clip_trainer`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from grounded_sam.data import iter_scenes
from grounded_sam.evaluation import box_prompt_miou
from grounded_sam.sam.registry import get_spec
from grounded_sam.train.sam_trainer import CHECKPOINT_NAME, Metrics, SamTrainer, TrainConfig

VALIDATION_SEED = 1_000_003
"""Stream seed of the held-out scenes watched during training (never a training seed)."""

LOG_EVERY = 50
"""Steps between plain progress lines when the output is not a terminal (no live progress bar there)."""


def _sam_parser(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps of the whole run")
    parser.add_argument("--out", type=Path, default=Path("runs/demo_sam"), help="checkpoint / output folder")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="fixes weights, scenes and prompts")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--model", default="demo_sam", help="registered architecture to train")
    parser.add_argument("--images-per-step", type=int, default=defaults.images_per_step)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations")
    parser.add_argument("--eval-scenes", type=int, default=30, help="held-out scenes per evaluation")


def train_sam(args: argparse.Namespace, console: Console) -> Path:
    """Run (or resume) a training run and export its weights; returns the safetensors path."""
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(steps=args.steps, seed=args.seed, images_per_step=args.images_per_step, lr=args.lr)
    trainer = SamTrainer(get_spec(args.model).config, config, args.out)
    if args.resume:
        trainer.load_checkpoint(args.out / CHECKPOINT_NAME)
        console.print(f"resumed at step {trainer.step} from {args.out / CHECKPOINT_NAME}")
    validation = list(iter_scenes(VALIDATION_SEED, args.eval_scenes, trainer.config.scenes))
    columns = (
        TextColumn("[bold]SAM"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "{task.fields[rate]:.2f} steps/s  loss {task.fields[loss]:.4f}  box IoU {task.fields[iou]:.3f}"
        ),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started, first_step = time.monotonic(), trainer.step
    smooth: dict[str, float] = {}
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(
            "train", total=config.steps, completed=trainer.step, rate=0.0, loss=0.0, iou=0.0
        )

        def on_step(step: int, metrics: Metrics) -> None:
            for key in ("loss", "box_iou"):
                if key in metrics:
                    smooth[key] = 0.98 * smooth.get(key, metrics[key]) + 0.02 * metrics[key]
            rate = (step - first_step) / max(time.monotonic() - started, 1e-9)
            progress.update(
                task, completed=step, rate=rate, loss=smooth["loss"], iou=smooth.get("box_iou", 0.0)
            )
            if not console.is_terminal and step % LOG_EVERY == 0:  # a log file gets plain lines instead
                progress.console.print(
                    f"step {step}/{config.steps}: loss {smooth['loss']:.4f}, "
                    f"box IoU {smooth.get('box_iou', 0.0):.3f}, {rate:.2f} steps/s"
                )
            if step % args.eval_every == 0 or step == config.steps:
                miou = box_prompt_miou(trainer.model, validation)
                trainer.model.train()
                progress.console.print(
                    f"step {step}: held-out box mIoU {miou:.4f}, loss {smooth['loss']:.4f}, "
                    f"lr {metrics['lr']:.2e}, {rate:.2f} steps/s"
                )

        trainer.run(on_step)
    path = trainer.export(args.out / f"{args.model}.safetensors")
    console.print(
        f"wrote {path} after {trainer.step} steps ({time.monotonic() - started:.0f} s this session)"
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grounded_sam.train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _sam_parser(commands.add_parser("sam", help="train the embedded demo SAM on generated scenes"))
    commands.add_parser(
        "clip", help="train the embedded demo CLIP (options: see its own --help)", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "clip":
        from grounded_sam.train.clip_trainer import main as clip_main

        return int(clip_main(rest) or 0)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    train_sam(args, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
