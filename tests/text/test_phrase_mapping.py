"""Prompt chunking, phrase mapping, thresholds and NMS on crafted Grounding DINO outputs."""

from __future__ import annotations

import logging

import pytest
import torch

from grounded_sam.text.phrase_mapping import (
    Matches,
    PromptChunk,
    boxes_to_pixels,
    concat_matches,
    decode_queries,
    plan_chunks,
    suppress,
)

CLS, SEP, DOT = 101, 102, 1012
TRAFFIC, LIGHT, HY, DRA, NT = 202, 203, 206, 207, 208
HIGH, LOW = 4.0, -6.0  # sigmoid ≈ 0.98 and 0.0025


def chunk_of(*phrases: list[int], ids: tuple[int, ...] | None = None) -> PromptChunk:
    (chunk,) = plan_chunks(phrases, cls_id=CLS, sep_id=SEP, dot_id=DOT, max_tokens=256)
    if ids is not None:
        chunk = PromptChunk(chunk.input_ids, chunk.spans, ids)
    return chunk


def crafted_logits(chunk: PromptChunk, peaks: list[dict[int, float]], width: int = 256) -> torch.Tensor:
    """(Q, width) logits: LOW on the prompt, -inf past it, and ``peaks[q]`` {token position: logit}."""
    logits = torch.full((len(peaks), width), float("-inf"))
    logits[:, : len(chunk.input_ids)] = LOW
    for query, peak in enumerate(peaks):
        for position, value in peak.items():
            logits[query, position] = value
    return logits


def centred_boxes(count: int) -> torch.Tensor:
    return torch.tensor([[0.5, 0.5, 0.2, 0.2]]).repeat(count, 1)


def decode(chunk: PromptChunk, logits: torch.Tensor, **thresholds: float) -> Matches:
    settings = {"box_threshold": 0.3, "text_threshold": 0.25, **thresholds}
    return decode_queries(logits, centred_boxes(len(logits)), chunk, (100, 200), **settings)


def test_chunk_layout_and_spans() -> None:
    chunk = chunk_of([LIGHT], [TRAFFIC, LIGHT], [HY, DRA, NT])
    assert chunk.input_ids == (CLS, LIGHT, DOT, TRAFFIC, LIGHT, DOT, HY, DRA, NT, DOT, SEP)
    assert chunk.spans == ((1, 2), (3, 5), (6, 9))
    assert chunk.phrase_ids == (0, 1, 2)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_query_on_a_multi_token_phrase_maps_to_it_not_to_a_phrase_sharing_a_word(order) -> None:
    phrases = {0: [LIGHT], 1: [TRAFFIC, LIGHT]}
    chunk = chunk_of(*(phrases[i] for i in order), ids=order)
    span = {phrase_id: span for phrase_id, span in zip(chunk.phrase_ids, chunk.spans, strict=True)}
    traffic_light = {position: HIGH for position in range(*span[1])}
    light_only = {span[0][0]: HIGH}
    found = decode(chunk, crafted_logits(chunk, [traffic_light, light_only]))
    assert found.phrase_ids.tolist() == [1, 0]


def test_sub_word_tokens_map_to_the_whole_phrase() -> None:
    chunk = chunk_of([HY, DRA, NT], [HY])
    # Only the word pieces "##dra" and "##nt" fire: the label is "hydrant", never a fragment.
    found = decode(chunk, crafted_logits(chunk, [{2: HIGH, 3: 2.0}, {5: 1.0}]))
    assert found.phrase_ids.tolist() == [0, 1]


def test_a_query_firing_on_two_phrases_gets_the_stronger_one_only() -> None:
    chunk = chunk_of([TRAFFIC, LIGHT], [HY, DRA, NT])
    found = decode(chunk, crafted_logits(chunk, [{1: 2.0, 2: 2.0, 5: 3.0}]))
    assert found.phrase_ids.tolist() == [1]
    assert found.scores.tolist() == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item()])


def test_box_score_is_the_max_over_all_tokens_and_text_threshold_uses_the_phrase_span() -> None:
    chunk = chunk_of([TRAFFIC, LIGHT])
    on_separator = {0: HIGH, 3: HIGH}  # [CLS] and "." fire, the phrase does not
    found = decode(chunk, crafted_logits(chunk, [on_separator]))
    assert len(found.scores) == 0
    kept = decode(chunk, crafted_logits(chunk, [on_separator]), text_threshold=0.0)
    assert kept.phrase_ids.tolist() == [0]
    assert kept.scores.item() == pytest.approx(torch.sigmoid(torch.tensor(HIGH)).item())


def test_thresholds_are_strict_and_independent() -> None:
    chunk = chunk_of([TRAFFIC, LIGHT])
    at_half = crafted_logits(chunk, [{1: 0.0}])  # sigmoid(0) = 0.5 exactly
    assert len(decode(chunk, at_half, box_threshold=0.5, text_threshold=0.1).scores) == 0
    assert len(decode(chunk, at_half, box_threshold=0.1, text_threshold=0.5).scores) == 0
    assert len(decode(chunk, at_half, box_threshold=0.49, text_threshold=0.49).scores) == 1


def test_mean_phrase_score_favours_phrases_whose_tokens_all_fire() -> None:
    chunk = chunk_of([TRAFFIC, LIGHT], [HY, DRA, NT])
    logits = crafted_logits(chunk, [{1: 3.0, 2: 3.0, 4: HIGH}])
    by_max = decode_queries(logits, centred_boxes(1), chunk, (10, 10), box_threshold=0.3, text_threshold=0.25)
    by_mean = decode_queries(
        logits, centred_boxes(1), chunk, (10, 10), box_threshold=0.3, text_threshold=0.25, phrase_score="mean"
    )
    assert by_max.phrase_ids.tolist() == [1] and by_mean.phrase_ids.tolist() == [0]


def test_global_phrase_ids_come_from_the_chunk() -> None:
    chunk = chunk_of([TRAFFIC], [LIGHT], ids=(30, 31))
    found = decode(chunk, crafted_logits(chunk, [{3: HIGH}, {1: HIGH}]))
    assert found.phrase_ids.tolist() == [31, 30]
    assert found.phrase_ids.dtype == torch.int64


def test_boxes_to_pixels_converts_and_clips() -> None:
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.25], [0.95, 0.05, 0.2, 0.2]])
    pixels = boxes_to_pixels(boxes, (100, 200))
    expected = torch.tensor([[50.0, 37.5, 150.0, 62.5], [170.0, 0.0, 200.0, 15.0]])
    torch.testing.assert_close(pixels, expected)


def test_sixty_phrases_are_packed_in_order_into_prompts_that_fit() -> None:
    generator = torch.Generator().manual_seed(0)
    phrases = [
        torch.randint(1100, 1200, (int(length),), generator=generator).tolist()
        for length in torch.randint(1, 12, (60,), generator=generator)
    ]
    chunks = plan_chunks(phrases, cls_id=CLS, sep_id=SEP, dot_id=DOT, max_tokens=64)
    assert len(chunks) > 1
    assert [i for chunk in chunks for i in chunk.phrase_ids] == list(range(60))
    for index, chunk in enumerate(chunks):
        assert len(chunk.input_ids) <= 64
        assert chunk.input_ids[0] == CLS and chunk.input_ids[-1] == SEP
        for phrase_id, (start, end) in zip(chunk.phrase_ids, chunk.spans, strict=True):
            assert list(chunk.input_ids[start:end]) == phrases[phrase_id]
            assert chunk.input_ids[end] == DOT
        if index + 1 < len(chunks):  # greedy: the next phrase really did not fit
            assert len(chunk.input_ids) + len(phrases[chunks[index + 1].phrase_ids[0]]) + 1 > 64


def test_per_class_gives_one_prompt_per_phrase() -> None:
    chunks = plan_chunks([[1200], [1201, 1202], [1203]], cls_id=CLS, sep_id=SEP, dot_id=DOT, per_class=True)
    assert [chunk.input_ids for chunk in chunks] == [
        (CLS, 1200, DOT, SEP),
        (CLS, 1201, 1202, DOT, SEP),
        (CLS, 1203, DOT, SEP),
    ]
    assert [chunk.phrase_ids for chunk in chunks] == [(0,), (1,), (2,)]


def test_overlong_phrase_is_cut_to_fit_and_empty_phrase_is_skipped(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        chunks = plan_chunks([[1200] * 300, [], [1201]], cls_id=CLS, sep_id=SEP, dot_id=DOT, max_tokens=256)
    assert "only its first 253 fit" in caplog.text
    assert [len(chunk.input_ids) for chunk in chunks] == [256, 4]
    assert [chunk.phrase_ids for chunk in chunks] == [(0,), (2,)]
    with pytest.raises(ValueError, match="max_tokens"):
        plan_chunks([[1200]], cls_id=CLS, sep_id=SEP, dot_id=DOT, max_tokens=3)


def _matches(boxes: list[list[float]], scores: list[float], ids: list[int]) -> Matches:
    return Matches(torch.tensor(boxes), torch.tensor(scores), torch.tensor(ids))


def test_nms_is_per_phrase_and_the_cap_keeps_the_best() -> None:
    same_place = [[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10, 10], [50, 50, 60, 60]]
    found = suppress(_matches(same_place, [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0]), 0.8, max_boxes=10)
    assert found.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert found.phrase_ids.tolist() == [0, 1, 0]
    capped = suppress(_matches(same_place, [0.5, 0.8, 0.7, 0.6], [0, 0, 1, 0]), None, max_boxes=2)
    assert capped.scores.tolist() == pytest.approx([0.8, 0.7])
    assert capped.boxes.tolist() == [[0, 0, 10, 10.5], [0, 0, 10, 10]]


def test_concat_of_nothing_is_empty() -> None:
    empty = concat_matches([])
    assert (
        empty.boxes.shape == (0, 4) and empty.scores.shape == (0,) and empty.phrase_ids.dtype == torch.int64
    )
    assert len(suppress(empty, 0.5, 5).scores) == 0
