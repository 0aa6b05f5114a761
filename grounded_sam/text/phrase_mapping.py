"""Pure helpers between phrases and Grounding DINO outputs: prompt chunks in, labelled boxes out.

A prompt is ``[CLS] p1 . p2 . … pn . [SEP]`` built from token ids, so the token span of every phrase is
known exactly (no re-tokenisation, no offset arithmetic). A query's score for a phrase is reduced over that
phrase's own tokens only, and the query takes the best phrase: a label is always one whole user phrase,
never a word piece or two phrases fused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torchvision.ops import batched_nms

logger = logging.getLogger(__name__)

PhraseScore = Literal["max", "mean"]


@dataclass(frozen=True)
class PromptChunk:
    """One prompt sent to the model.

    Attributes:
        input_ids: the full token sequence, ``[CLS]`` first and ``[SEP]`` last.
        spans: ``(start, end)`` token positions (end exclusive) of each phrase in ``input_ids``.
        phrase_ids: the index of each span's phrase in the caller's phrase list.
    """

    input_ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    phrase_ids: tuple[int, ...]


class Matches(NamedTuple):
    """Boxes kept from one forward pass: (K, 4) XYXY pixels, (K,) scores, (K,) int64 phrase ids."""

    boxes: torch.Tensor
    scores: torch.Tensor
    phrase_ids: torch.Tensor


def plan_chunks(
    phrase_tokens: Sequence[Sequence[int]],
    *,
    cls_id: int,
    sep_id: int,
    dot_id: int,
    max_tokens: int = 256,
    per_class: bool = False,
) -> list[PromptChunk]:
    """Pack phrases, in order, into as few prompts of at most ``max_tokens`` tokens as possible.

    Each phrase costs its own tokens plus one ``.``; each prompt adds ``[CLS]`` and ``[SEP]``. A phrase too
    long for a prompt of its own is cut to fit (with a warning); a phrase with no tokens is left out.
    With ``per_class`` every phrase gets a prompt of its own.

    Args:
        phrase_tokens: the token ids of each phrase, without special tokens.
        cls_id, sep_id, dot_id: ids of ``[CLS]``, ``[SEP]`` and ``.`` in the tokenizer.
        max_tokens: the text encoder's limit (Grounding DINO: 256), separators included.
    """
    budget = max_tokens - 2
    if budget < 2:
        raise ValueError(f"max_tokens must leave room for one token and its separators, got {max_tokens}")
    chunks: list[PromptChunk] = []
    pending: list[tuple[int, list[int]]] = []
    used = 0
    for phrase_id, tokens in enumerate(phrase_tokens):
        ids = list(tokens)
        if not ids:
            logger.debug("phrase %d has no tokens and cannot be detected", phrase_id)
            continue
        if len(ids) + 1 > budget:
            logger.warning(
                "phrase %d has %d tokens; only its first %d fit in a prompt", phrase_id, len(ids), budget - 1
            )
            ids = ids[: budget - 1]
        if pending and (per_class or used + len(ids) + 1 > budget):
            chunks.append(_assemble(pending, cls_id, sep_id, dot_id))
            pending, used = [], 0
        pending.append((phrase_id, ids))
        used += len(ids) + 1
    if pending:
        chunks.append(_assemble(pending, cls_id, sep_id, dot_id))
    return chunks


def _assemble(phrases: list[tuple[int, list[int]]], cls_id: int, sep_id: int, dot_id: int) -> PromptChunk:
    input_ids = [cls_id]
    spans = []
    for _, tokens in phrases:
        spans.append((len(input_ids), len(input_ids) + len(tokens)))
        input_ids += [*tokens, dot_id]
    input_ids.append(sep_id)
    return PromptChunk(tuple(input_ids), tuple(spans), tuple(phrase_id for phrase_id, _ in phrases))


def phrase_scores(
    probs: torch.Tensor, spans: Sequence[tuple[int, int]], reduce: PhraseScore = "max"
) -> torch.Tensor:
    """(Q, P) score of each query for each phrase: ``reduce`` of the (Q, T) token ``probs`` over its span."""
    columns = []
    for start, end in spans:
        tokens = probs[:, start:end]
        columns.append(tokens.amax(dim=1) if reduce == "max" else tokens.mean(dim=1))
    return torch.stack(columns, dim=1)


def boxes_to_pixels(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) normalised (cx, cy, w, h) → (N, 4) XYXY pixels of an image of ``(height, width)``, clipped."""
    height, width = image_size
    centre, size = boxes[:, :2], boxes[:, 2:]
    corners = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    scale = corners.new_tensor([width, height, width, height])
    return torch.minimum(corners * scale, scale).clamp(min=0)


def decode_queries(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    chunk: PromptChunk,
    image_size: tuple[int, int],
    *,
    box_threshold: float,
    text_threshold: float,
    phrase_score: PhraseScore = "max",
) -> Matches:
    """Keep the queries that pass both thresholds and give each one exactly one phrase.

    A query's score is its highest token probability over the whole prompt (as Grounding DINO and
    ``transformers`` compute it) and must exceed ``box_threshold``. Its phrase is the one whose own tokens
    score highest (``phrase_score`` over the span), and that phrase score must exceed ``text_threshold``.

    Args:
        logits: (Q, T) token logits, T ≥ ``len(chunk.input_ids)`` (positions past the prompt are ``-inf``).
        boxes: (Q, 4) normalised (cx, cy, w, h).
        chunk: the prompt the logits belong to.
        image_size: ``(height, width)`` of the input image.
    """
    probs = logits.float().sigmoid()
    scores = probs.amax(dim=1)
    best, column = phrase_scores(probs, chunk.spans, phrase_score).max(dim=1)
    keep = (scores > box_threshold) & (best > text_threshold)
    global_ids = torch.as_tensor(chunk.phrase_ids, dtype=torch.int64, device=logits.device)
    return Matches(boxes_to_pixels(boxes[keep].float(), image_size), scores[keep], global_ids[column[keep]])


def suppress(matches: Matches, iou_threshold: float | None, max_boxes: int) -> Matches:
    """Non-maximum suppression within each phrase, then the ``max_boxes`` best, sorted by score.

    ``iou_threshold=None`` skips the suppression.
    """
    if iou_threshold is None:
        order = matches.scores.argsort(descending=True)
    else:
        order = batched_nms(matches.boxes, matches.scores, matches.phrase_ids, iou_threshold)
    order = order[:max_boxes]
    return Matches(matches.boxes[order], matches.scores[order], matches.phrase_ids[order])


def concat_matches(parts: Sequence[Matches], device: torch.device | str = "cpu") -> Matches:
    """The matches of several prompts as one set (empty when ``parts`` is)."""
    if not parts:
        return Matches(
            torch.zeros(0, 4, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.int64, device=device),
        )
    return Matches(*(torch.cat(column) for column in zip(*parts, strict=True)))
