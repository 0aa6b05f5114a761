import math

import numpy as np
import pytest
import torch

from grounded_sam.data import SceneConfig
from grounded_sam.sam.build import load_sam
from grounded_sam.sam.modeling.config import SamConfig, ViTConfig
from grounded_sam.train.__main__ import main
from grounded_sam.train.sam_trainer import CHECKPOINT_NAME, SamTrainer, TrainConfig

TINY = SamConfig(
    encoder=ViTConfig(32, 2, 2, (1,), window_size=2, use_rel_pos=False),
    image_size=64,
    prompt_embed_dim=32,
    decoder_heads=2,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)
SCENES = SceneConfig(max_objects=3)


def _config(**overrides) -> TrainConfig:
    settings = dict(steps=4, images_per_step=2, prompts_per_image=2, warmup_steps=2, scenes=SCENES)
    return TrainConfig(**{**settings, **overrides})


def _params(trainer: SamTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    trainer = SamTrainer(TINY, _config(steps=100, warmup_steps=10, lr=1e-3, min_lr_fraction=0.1), "unused")
    assert trainer.lr_at(0) == pytest.approx(1e-4)
    assert trainer.lr_at(9) == pytest.approx(1e-3)
    assert trainer.lr_at(55) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert trainer.lr_at(100) == pytest.approx(1e-4)


def test_scenes_take_the_model_input_size_and_depend_on_the_step():
    trainer = SamTrainer(TINY, _config(), "unused")
    first, second = trainer.scenes_for(0), trainer.scenes_for(1)
    assert len(first) == 2 and first[0].image.shape == (64, 64, 3)
    assert not np.array_equal(first[0].image, second[0].image)
    assert np.array_equal(first[1].image, trainer.scenes_for(0)[1].image)


def test_three_steps_run_end_to_end_and_change_the_weights(tmp_path):
    torch.manual_seed(0)
    trainer = SamTrainer(TINY, _config(steps=3, checkpoint_every=2), tmp_path)
    before = _params(trainer)
    seen: list[tuple[int, dict[str, float]]] = []
    trainer.run(lambda step, metrics: seen.append((step, metrics)))
    assert [step for step, _ in seen] == [1, 2, 3] and trainer.step == 3
    for _, metrics in seen:
        assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0
        assert 0 <= metrics.get("box_iou", 0.0) <= 1 and 0 <= metrics.get("point_iou", 0.0) <= 1
    after = _params(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    exported = load_sam(trainer.export(tmp_path / "tiny.safetensors"))
    for key, value in exported.state_dict().items():
        torch.testing.assert_close(value, after[key], rtol=0, atol=0)


def test_repeated_steps_on_one_batch_lower_the_loss(tmp_path):
    torch.manual_seed(0)
    trainer = SamTrainer(TINY, _config(steps=10, lr=3e-3, warmup_steps=0, correction_rounds=0), tmp_path)
    losses = []
    for _ in range(8):
        trainer.step = 0  # same scenes and prompts every time
        losses.append(trainer.train_step()["loss"])
    assert losses[-1] < 0.8 * losses[0]


def test_resume_continues_exactly_like_the_uninterrupted_run(tmp_path):
    straight = SamTrainer(TINY, _config(), tmp_path / "a")
    for _ in range(2):
        straight.train_step()
    straight.save_checkpoint(tmp_path / "mid.pt")
    straight.train_step(), straight.train_step()

    resumed = SamTrainer(TINY, _config(), tmp_path / "b")
    torch.manual_seed(123)  # the checkpoint restores the RNG state, whatever happened meanwhile
    resumed.load_checkpoint(tmp_path / "mid.pt")
    assert resumed.step == 2
    resumed.train_step(), resumed.train_step()
    assert resumed.step == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    optimiser_a, optimiser_b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for index, state in optimiser_a["state"].items():
        assert torch.equal(state["exp_avg"], optimiser_b["state"][index]["exp_avg"])


def test_resume_refuses_other_settings_and_missing_files(tmp_path):
    trainer = SamTrainer(TINY, _config(), tmp_path)
    trainer.save_checkpoint(tmp_path / CHECKPOINT_NAME)
    other = SamTrainer(TINY, _config(lr=1e-2), tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        other.load_checkpoint(tmp_path / CHECKPOINT_NAME)
    with pytest.raises(FileNotFoundError, match="without --resume"):
        other.load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize(
    "overrides", [dict(steps=0), dict(correction_rounds=-1), dict(box_fraction=1.5), dict(lr=0.0)]
)
def test_train_config_rejects_bad_values(overrides):
    with pytest.raises(ValueError):
        _config(**overrides)


def test_command_line_trains_resumes_and_exports(tmp_path, capsys):
    args = ["sam", "--steps", "1", "--out", str(tmp_path), "--images-per-step", "1", "--eval-scenes", "1"]
    assert main(args) == 0
    weights = tmp_path / "demo_sam.safetensors"
    first = load_sam(weights).state_dict()
    assert main([*args, "--resume"]) == 0  # already complete: resumes at step 1 and re-exports
    assert "resumed at step 1" in capsys.readouterr().out
    for key, value in load_sam(weights).state_dict().items():
        assert torch.equal(value, first[key]), key
    with pytest.raises(SystemExit):
        main(["sam", "--bogus"])
