"""Tests for the demo CLIP training: data, captions, losses, and a tiny end-to-end run with resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from grounded_sam.data import SceneConfig, make_scene
from grounded_sam.text.demo_clip import build_demo_clip, clip_input_for, demo_tokenizer
from grounded_sam.train.clip_data import (
    BACKGROUND_ID,
    Captions,
    CropBatch,
    StepData,
    background_masks,
    caption_matches,
    perturb_mask,
    sample_captions,
    scene_batch,
    segmented_masks,
)
from grounded_sam.train.clip_trainer import (
    ClipTrainConfig,
    Vocabulary,
    learning_rate,
    main,
    multi_positive_nce,
    step_data,
    train_clip,
)

TINY_MODEL = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 24, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
TINY_SCENES = SceneConfig(size=(64, 64), min_objects=1, max_objects=3)


def tiny_config(tmp_path, steps: int, **changes) -> ClipTrainConfig:
    settings = dict(
        out_dir=tmp_path,
        steps=steps,
        scenes_per_step=2,
        scenes=TINY_SCENES,
        warmup_steps=1,
        checkpoint_every=1,
        model=TINY_MODEL,
    )
    settings.update(changes)
    return ClipTrainConfig(**settings)


def test_multi_positive_nce_equals_cross_entropy_for_one_positive_each():
    torch.manual_seed(0)
    logits = torch.randn(5, 5)
    expected = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert torch.allclose(multi_positive_nce(logits, torch.eye(5, dtype=bool)), expected)
    # A second positive per row can only lower the loss (more mass counted as correct).
    positives = torch.eye(5, dtype=bool) | torch.eye(5, dtype=bool).roll(1, dims=1)
    assert multi_positive_nce(logits, positives) < expected


def test_caption_matches_partial_and_background_captions():
    # crops: red(0) circle(0), blue(2) circle(0), background
    batch = CropBatch(torch.zeros(3, 3, 8, 8), torch.tensor([0, 2, BACKGROUND_ID]), torch.tensor([0, 0, -1]))
    captions = Captions(
        ["red circle", "circle", "red shape", "background"],
        torch.tensor([0, -1, 0, -1]),
        torch.tensor([0, 0, -1, -1]),
        torch.tensor([False, False, False, True]),
    )
    expected = torch.tensor(
        [[True, True, True, False], [False, True, False, False], [False, False, False, True]]
    )
    assert torch.equal(caption_matches(batch, captions), expected)


def test_sampled_captions_are_true_for_their_crop():
    rng = np.random.default_rng(0)
    colors, shapes = ("red", "blue"), ("circle", "star")
    batch = CropBatch(
        torch.zeros(40, 3, 8, 8), torch.tensor([0, 1, -1, 1] * 10), torch.tensor([1, 0, -1, 1] * 10)
    )
    captions = sample_captions(batch, colors, shapes, rng)
    assert len(captions.texts) == 40
    assert caption_matches(batch, captions).diagonal().all()
    for text, color, shape, flag in zip(
        captions.texts, captions.colors, captions.shapes, captions.background, strict=True
    ):
        if color >= 0:
            assert colors[color] in text
        if shape >= 0:
            assert shapes[shape] in text
        assert flag == (color < 0 and shape < 0 and not any(s in text for s in shapes))


def test_learning_rate_warms_up_then_decays_to_zero(tmp_path):
    config = ClipTrainConfig(out_dir=tmp_path, steps=100, warmup_steps=10, lr=1e-3)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 55) == pytest.approx(0.5e-3)
    assert learning_rate(config, 100) == pytest.approx(0.0, abs=1e-12)


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        ClipTrainConfig(out_dir=tmp_path, steps=0)
    with pytest.raises(ValueError, match="lr"):
        ClipTrainConfig(out_dir=tmp_path, lr=0.0)
    with pytest.raises(ValueError, match="sam_masks"):
        ClipTrainConfig(out_dir=tmp_path, sam_masks=1.5)
    with pytest.raises(ValueError, match="data_workers"):
        ClipTrainConfig(out_dir=tmp_path, data_workers=-1)


def test_segmented_masks_keep_ground_truth_where_the_segmenter_misses():
    scene = make_scene(5, SceneConfig(size=(96, 96), min_objects=2, max_objects=4))
    calls = []

    def segment(image, boxes):
        calls.append(boxes)
        drawn = scene.masks.copy()
        drawn[0] = np.roll(drawn[0], 1, axis=1)  # still mostly the object: used
        drawn[1] = False  # missed: the ground truth stays
        return drawn

    masks = segmented_masks(scene, segment, np.random.default_rng(0))
    assert len(calls) == 1 and calls[0].shape == (len(scene), 4)
    assert np.abs(calls[0] - scene.boxes).max() <= 8.0  # slightly wrong boxes, as proposals are
    assert np.array_equal(masks[0], np.roll(scene.masks[0], 1, axis=1))
    assert np.array_equal(masks[1], scene.masks[1])


def test_scene_batch_draws_the_chosen_scenes_through_the_segmenter():
    scenes = [make_scene(seed, TINY_SCENES) for seed in range(4)]
    segmented = []

    def segment(image, boxes):
        segmented.append(len(boxes))
        return np.zeros((len(boxes), *image.shape[:2]), dtype=bool)  # all missed: ground truth used

    clip_input = clip_input_for(TINY_MODEL)
    args = (TINY_SCENES.colors, TINY_SCENES.shapes, clip_input, 0.1, "mean")
    batch = scene_batch(scenes, *args, np.random.default_rng(0), 1, segment=segment, segment_prob=1.0)
    assert segmented == [len(s) for s in scenes]
    assert (batch.colors >= 0).sum() == sum(len(s) for s in scenes)
    scene_batch(scenes, *args, np.random.default_rng(0), 1, segment=segment, segment_prob=0.0)
    assert len(segmented) == len(scenes)  # no more calls


def test_perturbed_masks_stay_close_to_the_original():
    masks = make_scene(3, SceneConfig()).masks
    mask = masks[masks.sum(axis=(1, 2)).argmax()]
    assert mask.sum() > 400
    for seed in range(8):
        out = perturb_mask(mask, np.random.default_rng(seed))
        assert out.shape == mask.shape and out.dtype == bool
        assert 0 < out.sum() <= 2 * mask.sum()
        assert (out & mask).sum() >= 0.7 * mask.sum()


def test_background_masks_avoid_single_objects():
    scene = make_scene(5, SceneConfig(size=(96, 96), min_objects=2, max_objects=4))
    masks = background_masks(scene, 6, np.random.default_rng(0))
    assert 0 < len(masks) <= 6
    for mask in masks:
        inside = (scene.masks & mask).sum(axis=(1, 2))
        # Pure background, or the whole of two objects (a merged mask).
        assert inside.sum() == 0 or ((inside == scene.masks.sum(axis=(1, 2))).sum() == 2)


def test_scene_batch_labels_each_crop():
    scenes = [make_scene(seed, TINY_SCENES) for seed in range(3)]
    clip_input = clip_input_for(TINY_MODEL)
    batch = scene_batch(
        scenes, TINY_SCENES.colors, TINY_SCENES.shapes, clip_input, 0.1, "mean", np.random.default_rng(0), 1
    )
    instances = sum(len(s) for s in scenes)
    assert batch.crops.shape[1:] == (3, 24, 24)
    assert (batch.colors >= 0).sum() == instances
    assert len(batch.crops) - instances <= len(scenes)  # at most one negative per scene
    first = scenes[0]
    assert [TINY_SCENES.colors[i] for i in batch.colors[: len(first)]] == first.colors
    assert torch.equal(batch.colors < 0, batch.shapes < 0)


def test_vocabulary_loss_is_small_when_the_right_phrases_win():
    torch.manual_seed(0)
    scenes = SceneConfig(colors=("red", "blue"), shapes=("circle", "star", "ring"))
    vocabulary = Vocabulary(scenes, demo_tokenizer(TINY_MODEL))
    assert vocabulary.phrases[-1] == "background" and len(vocabulary.phrases) == 6 + 2 + 3 + 1
    colors, shapes = torch.tensor([1, 0, -1]), torch.tensor([2, 0, -1])
    logits = torch.zeros(3, len(vocabulary.phrases))
    right = [
        ["blue ring", "blue shape", "ring"],
        ["red circle", "red shape", "circle"],
        ["background"],
    ]
    for row, names in enumerate(right):
        logits[row, [vocabulary.phrases.index(n) for n in names]] = 30.0
    assert vocabulary.losses(logits, colors, shapes) < 1e-6
    assert vocabulary.losses(torch.zeros_like(logits), colors, shapes) > 1.0
    model = build_demo_clip(TINY_MODEL)
    embeddings = vocabulary.embeddings(model)
    assert embeddings.shape == (len(vocabulary.phrases), 16)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(len(vocabulary.phrases)), atol=1e-5)


def test_step_data_is_fixed_by_seed_and_step_in_any_process(tmp_path):
    config = tiny_config(tmp_path, 3, sam_masks=0.0)
    whole, resumed = step_data(config, 0), step_data(config, 2)
    assert isinstance(whole, StepData) and (len(whole), len(resumed)) == (3, 1)
    batch, captions = whole[2]
    again, again_captions = resumed[0]
    assert torch.equal(batch.crops, again.crops) and torch.equal(batch.shapes, again.shapes)
    assert captions.texts == again_captions.texts
    assert whole[1][1].texts != captions.texts  # another step, other scenes
    # A DataLoader worker makes the same data as the main process.
    loaded = list(DataLoader(whole, batch_size=None, num_workers=1))
    assert len(loaded) == 3 and torch.equal(loaded[2][0].crops, batch.crops)
    assert loaded[2][1].texts == captions.texts
    with pytest.raises(IndexError):
        whole[3]


def test_tiny_run_trains_checkpoints_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    straight = train_clip(tiny_config(tmp_path / "a", 3))
    steps_seen: list[int] = []
    train_clip(tiny_config(tmp_path / "b", 2), lambda step, metrics: steps_seen.append(step))
    resumed = train_clip(tiny_config(tmp_path / "b", 3), lambda step, metrics: steps_seen.append(step))
    assert steps_seen == [1, 2, 3]  # the second call only did the missing step
    checkpoint = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3
    first, second = load_file(str(straight)), load_file(str(resumed))
    assert first.keys() == second.keys() and all(v.dtype == torch.float16 for v in first.values())
    assert all(torch.equal(first[key], second[key]) for key in first)
    # Training changed the weights away from the seeded initialisation.
    torch.manual_seed(0)
    initial = build_demo_clip(TINY_MODEL).state_dict()
    assert not torch.equal(initial["visual.proj"].half(), first["visual.proj"])
    assert math.isfinite(float(first["logit_scale"]))


def test_runs_without_a_data_worker_match_runs_with_one(tmp_path):
    torch.manual_seed(0)
    with_worker = load_file(str(train_clip(tiny_config(tmp_path / "a", 2))))
    torch.manual_seed(0)
    in_process = load_file(str(train_clip(tiny_config(tmp_path / "b", 2, data_workers=0))))
    assert all(torch.equal(with_worker[key], in_process[key]) for key in with_worker)


def test_resume_with_another_seed_is_refused(tmp_path):
    train_clip(tiny_config(tmp_path, 1))
    with pytest.raises(ValueError, match="seed"):
        train_clip(tiny_config(tmp_path, 2, seed=1))


def test_command_line_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--steps" in capsys.readouterr().out
