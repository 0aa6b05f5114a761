"""Train the demo CLIP on mask crops of freshly generated synthetic scenes.

Each step draws ``scenes_per_step`` scenes (seeded by the run seed and the step, so a run is
reproducible and a resumed run continues exactly), crops every instance and a few background regions
as the CLIP labeler does at inference, and minimises two losses with one learnable temperature:

* CLIP InfoNCE between the crops and one random caption each ("a photo of a red circle.", "red shape",
  "circle", "background", ...), where every caption that is true for a crop counts as a positive;
* the labeler's own task: each crop against the template-averaged embeddings of the 64 class names and
  "background" (and of the 8 colour and 8 shape phrases), as cross-entropy.

A share of the scenes (``sam_masks``) show their instances through the masks the demo SAM draws from
their slightly wrong boxes, as the demo's text stage shows them to CLIP at inference; the others through
perturbed ground-truth masks.

Checkpoints (model, optimiser, step) are written atomically every ``checkpoint_every`` steps; the final
weights are exported as float16 safetensors.

Example::

    python -m grounded_sam.train clip --steps 2000 --out runs/clip \
        --weights grounded_sam/assets/demo_clip.safetensors
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from grounded_sam.atomic import atomic_path
from grounded_sam.data import SceneConfig, all_class_names
from grounded_sam.text.demo_clip import (
    BACKGROUND_PHRASE,
    DEMO_CLIP_BACKGROUND,
    DEMO_CLIP_MARGIN,
    DEMO_CLIP_TEMPLATES,
    build_demo_clip,
    clip_input_for,
    demo_clip_config,
    demo_tokenizer,
)
from grounded_sam.train.clip_data import Captions, CropBatch, StepData, caption_matches, sam_segmenter

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class ClipTrainConfig:
    """One training run.

    Attributes:
        out_dir: folder for ``checkpoint.pt`` (resumed from when present and ``resume`` is set).
        weights_path: where the final float16 safetensors go (default ``out_dir/demo_clip.safetensors``).
        seed: fixes the model initialisation and every step's scenes and augmentations.
        steps: optimiser steps in total (a resumed run continues up to this number).
        scenes_per_step: scenes drawn per step; the batch is all their instances plus negatives.
        scenes: how the training scenes are drawn.
        negatives_per_scene: background / merged-object crops per scene, captioned "background".
        lr, weight_decay, warmup_steps: AdamW with linear warm-up then cosine decay to zero.
        checkpoint_every: steps between checkpoints (the last step is always saved).
        model: open_clip ``CLIP`` keyword arguments (default: the demo config).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists.
        sam_masks: share of scenes whose instances are cropped through the demo SAM's box masks.
        sam_weights: that SAM's safetensors (default: the shipped ``demo_sam``).
        data_workers: processes making the next steps' data during a step (0: made between steps).
    """

    out_dir: Path = Path("runs/clip")
    weights_path: Path | None = None
    seed: int = 0
    steps: int = 2000
    scenes_per_step: int = 24
    scenes: SceneConfig = field(
        default_factory=lambda: SceneConfig(size=(192, 192), min_objects=2, max_objects=7)
    )
    negatives_per_scene: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 150
    checkpoint_every: int = 200
    model: Mapping[str, Any] | None = None
    resume: bool = True
    sam_masks: float = 0.25
    sam_weights: Path | None = None
    data_workers: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.scenes_per_step < 1 or self.checkpoint_every < 1:
            raise ValueError(
                "steps, scenes_per_step and checkpoint_every must be >= 1, got "
                f"{self.steps}, {self.scenes_per_step}, {self.checkpoint_every}"
            )
        if self.lr <= 0 or min(self.weight_decay, self.warmup_steps, self.negatives_per_scene) < 0:
            raise ValueError("lr must be > 0 and weight_decay, warmup_steps, negatives_per_scene >= 0")
        if self.data_workers < 0:
            raise ValueError(f"data_workers must be >= 0, got {self.data_workers}")
        if not 0 <= self.sam_masks <= 1:
            raise ValueError(f"sam_masks must be a share in [0, 1], got {self.sam_masks}")

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.out_dir) / "checkpoint.pt"

    @property
    def final_weights_path(self) -> Path:
        return Path(self.weights_path or Path(self.out_dir) / "demo_clip.safetensors")


def learning_rate(config: ClipTrainConfig, step: int) -> float:
    """The learning rate at 0-based ``step``: linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for (B, T) ``logits`` where every True of (B, T) ``positives`` is a match.

    Each row (and column) has at least one positive; its loss is ``-log`` of the softmax mass on them.
    """
    blocked = logits.masked_fill(~positives, float("-inf"))
    rows = (logits.logsumexp(dim=1) - blocked.logsumexp(dim=1)).mean()
    columns = (logits.logsumexp(dim=0) - blocked.logsumexp(dim=0)).mean()
    return (rows + columns) / 2


class Vocabulary:
    """The phrases the labeler is asked about (class names, colour and shape phrases, "background").

    Args:
        scenes: the scene config whose colours and shapes are named.
        tokenizer: the model's tokenizer.
    """

    def __init__(self, scenes: SceneConfig, tokenizer: Any) -> None:
        self.colors, self.shapes = scenes.colors, scenes.shapes
        self.classes = all_class_names(scenes)  # shape-major: index = shape * n_colors + colour
        self.phrases = [
            *self.classes,
            *(f"{c} shape" for c in self.colors),
            *self.shapes,
            BACKGROUND_PHRASE,
        ]
        prompts = [t.replace("{}", p) for p in self.phrases for t in DEMO_CLIP_TEMPLATES]
        self.tokens = tokenizer(prompts)

    def embeddings(self, model: nn.Module) -> torch.Tensor:
        """(P, D) normalised phrase embeddings averaged over the templates, as the labeler computes them."""
        per_prompt = F.normalize(model.encode_text(self.tokens), dim=-1)
        return F.normalize(per_prompt.view(len(self.phrases), len(DEMO_CLIP_TEMPLATES), -1).mean(1), dim=-1)

    def losses(self, logits: torch.Tensor, colors: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
        """Class, colour and shape cross-entropy for (B, P) crop-phrase ``logits``; -1 means background."""
        n_classes, n_colors, n_shapes = len(self.classes), len(self.colors), len(self.shapes)
        background = len(self.phrases) - 1
        is_bg = colors < 0
        columns = torch.arange(len(self.phrases))
        groups = (
            (columns[:n_classes], shapes * n_colors + colors, n_classes),
            (columns[n_classes : n_classes + n_colors], colors, n_colors),
            (columns[n_classes + n_colors : background], shapes, n_shapes),
        )
        total = logits.new_zeros(())
        for weight, (chosen, target, size) in zip((1.0, 0.5, 0.5), groups, strict=True):
            subset = logits[:, torch.cat([chosen, columns[background:]])]
            total = total + weight * F.cross_entropy(subset, torch.where(is_bg, size, target))
        return total


def _optimizer(model: nn.Module, config: ClipTrainConfig) -> torch.optim.Optimizer:
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        no_decay = parameter.ndim < 2 or "embedding" in name or "logit_scale" in name
        (plain if no_decay else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def _save_checkpoint(
    config: ClipTrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, step: int
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "seed": config.seed,
    }
    with atomic_path(config.checkpoint_path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(config: ClipTrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """The number of steps already done (0 without a checkpoint); model and optimiser restored in place."""
    path = config.checkpoint_path
    if not (config.resume and path.exists()):
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["seed"] != config.seed:
        raise ValueError(
            f"{path} was trained with seed {state['seed']}, not {config.seed}: use another out_dir"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"])


def export_weights(model: nn.Module, path: str | Path) -> Path:
    """Write the model's weights as float16 safetensors, atomically; return the path."""
    state = {key: value.detach().to(torch.float16).contiguous() for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def train_step(
    model: nn.Module, vocabulary: Vocabulary, tokenizer: Any, batch: CropBatch, captions: Captions
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one step's crops and captions (see :class:`~grounded_sam.train.clip_data.StepData`)
    and its metrics."""
    images = F.normalize(model.encode_image(batch.crops), dim=-1)
    texts = F.normalize(model.encode_text(tokenizer(captions.texts)), dim=-1)
    scale = model.logit_scale.exp().clamp(max=100.0)
    contrastive = multi_positive_nce(scale * images @ texts.T, caption_matches(batch, captions))
    phrase_logits = scale * images @ vocabulary.embeddings(model).T
    labelling = vocabulary.losses(phrase_logits, batch.colors, batch.shapes)
    with torch.no_grad():
        n_classes, n_colors = len(vocabulary.classes), len(vocabulary.colors)
        columns = [*range(n_classes), len(vocabulary.phrases) - 1]
        predicted = phrase_logits[:, columns].argmax(dim=1)
        target = torch.where(batch.colors < 0, n_classes, batch.shapes * n_colors + batch.colors)
        accuracy = (predicted == target).float().mean().item()
    metrics = {
        "contrastive": contrastive.item(),
        "labelling": labelling.item(),
        "accuracy": accuracy,
        "scale": scale.item(),
        "batch": float(len(batch.crops)),
    }
    return contrastive + labelling, metrics


def step_data(config: ClipTrainConfig, first: int) -> StepData:
    """The data of steps ``first`` .. ``config.steps - 1`` of a run."""
    return StepData(
        seed=config.seed,
        first=first,
        last=config.steps,
        scenes_per_step=config.scenes_per_step,
        scenes=config.scenes,
        clip_input=clip_input_for(config.model or demo_clip_config()),
        margin=DEMO_CLIP_MARGIN,
        background=DEMO_CLIP_BACKGROUND,
        negatives_per_scene=config.negatives_per_scene,
        sam_masks=config.sam_masks,
        segmenter=partial(sam_segmenter, config.sam_weights),
    )


def train_clip(config: ClipTrainConfig, on_step: StepCallback | None = None) -> Path:
    """Train (or resume) a run and return the path of the exported float16 safetensors weights.

    ``on_step(step, metrics)`` is called after every step (1-based ``step``), e.g. for a progress bar.
    """
    torch.manual_seed(config.seed)
    model_config = config.model or demo_clip_config()
    model = build_demo_clip(model_config).train()
    tokenizer = demo_tokenizer(model_config)
    vocabulary = Vocabulary(config.scenes, tokenizer)
    optimizer = _optimizer(model, config)
    done = _load_checkpoint(config, model, optimizer)
    # With data_workers, worker processes make the next steps' scenes and crops during this step.
    loader = DataLoader(
        step_data(config, done),
        batch_size=None,
        num_workers=config.data_workers,
        prefetch_factor=2 if config.data_workers else None,
    )
    for step, (batch, captions) in enumerate(loader, start=done):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        loss, metrics = train_step(model, vocabulary, tokenizer, batch, captions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if on_step is not None:
            on_step(step + 1, metrics)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            _save_checkpoint(config, model, optimizer, step + 1)
    return export_weights(model.eval(), config.final_weights_path)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m grounded_sam.train clip", description=__doc__.split("\n")[0]
    )
    defaults = ClipTrainConfig()
    parser.add_argument("--out", type=Path, default=defaults.out_dir, help="checkpoint folder")
    parser.add_argument("--weights", type=Path, default=None, help="final safetensors path")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--scenes-per-step", type=int, default=defaults.scenes_per_step)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--eval-scenes", type=int, default=200, help="held-out scenes to evaluate at the end")
    parser.add_argument(
        "--sam-masks", type=float, default=defaults.sam_masks, help="share of SAM-drawn scenes"
    )
    parser.add_argument("--sam-weights", type=Path, default=None, help="demo SAM weights (default: shipped)")
    parser.add_argument(
        "--data-workers", type=int, default=defaults.data_workers, help="processes making data ahead"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Command line: train with a rich progress bar, then print the held-out evaluation."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    args = _parse(argv)
    torch.set_num_threads(args.threads)
    config = ClipTrainConfig(
        out_dir=args.out,
        weights_path=args.weights,
        seed=args.seed,
        steps=args.steps,
        scenes_per_step=args.scenes_per_step,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
        sam_masks=args.sam_masks,
        sam_weights=args.sam_weights,
        data_workers=args.data_workers,
    )
    console = Console(stderr=True)
    columns = (
        TextColumn("clip"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    started = time.monotonic()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=config.steps, info="")

        def report(step: int, metrics: dict[str, float]) -> None:
            info = " ".join(f"{k}={v:.3g}" for k, v in metrics.items())
            progress.update(task, completed=step, info=info)
            if step % 50 == 0:
                console.log(f"step {step}: {info}")

        path = train_clip(config, report)
    console.print(
        f"weights: {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.monotonic() - started:.0f} s"
    )
    if args.eval_scenes > 0:
        from grounded_sam.train.clip_eval import evaluate_weights

        for name, value in evaluate_weights(path, args.eval_scenes, seed=args.seed + 1_000).items():
            console.print(f"{name}: {value:.4f}")


if __name__ == "__main__":  # pragma: no cover
    main()
