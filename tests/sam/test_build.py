"""build_sam / load_sam: architecture inference, every checkpoint format, and clear errors."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch
from safetensors.torch import save_file

from grounded_sam.sam.build import build_sam, build_sam_from_config, infer_config, load_sam
from grounded_sam.sam.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from grounded_sam.sam.registry import get_spec, list_models
from grounded_sam.weights import WeightsNotFoundError
from tests.sam.builders import TINY_TINYVIT_SAM, TINY_VIT_SAM, random_sam, reference_twin

FOREIGN_FORMAT_MODELS = [
    n for n in list_models() if (w := get_spec(n).weights) is None or w.source_format != "ours"
]


@pytest.mark.parametrize("name", FOREIGN_FORMAT_MODELS)
def test_architecture_is_inferred_from_every_registered_state_dict(name: str) -> None:
    """Official/HF files carry no architecture, so it must be read off their weights (ours store it)."""
    config = get_spec(name).config
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        state_dict = build_sam_from_config(config).state_dict()
    assert infer_config(state_dict) == config


def test_architecture_is_inferred_from_small_custom_models() -> None:
    assert infer_config(random_sam(TINY_VIT_SAM).state_dict()) == TINY_VIT_SAM
    # No TinyViT weight depends on the input size, so an official-format file is taken to be 1024.
    inferred = infer_config(random_sam(TINY_TINYVIT_SAM).state_dict())
    assert inferred == dataclasses.replace(TINY_TINYVIT_SAM, image_size=1024)


def test_a_vit_with_small_patches_gets_a_finer_embedding_grid() -> None:
    config = dataclasses.replace(
        TINY_VIT_SAM, encoder=dataclasses.replace(TINY_VIT_SAM.encoder, patch_size=8)
    )
    model = build_sam_from_config(config).eval()
    side = config.image_size // 8
    assert config.embedding_size == side
    with torch.no_grad():
        features = model.encode_image(torch.zeros(1, 3, config.image_size, config.image_size))
        low_res, iou = model.decode(features, None, torch.tensor([[4.0, 4.0, 40.0, 40.0]]), None, False)
    assert iou.shape == (1, 1)
    assert features.shape[-2:] == (side, side) and low_res.shape[-2:] == (4 * side, 4 * side)
    assert infer_config(model.state_dict()) == config


def test_official_checkpoint_loads_without_a_name(tmp_path) -> None:
    model = random_sam(TINY_VIT_SAM, seed=3)
    reference = reference_twin(model, TINY_VIT_SAM)
    path = tmp_path / "custom_sam.pth"
    torch.save(reference.state_dict(), path)
    loaded = build_sam(checkpoint=path, device="cpu")
    assert not loaded.training
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_wrapped_and_prefixed_checkpoints_load(tmp_path) -> None:
    model = random_sam(TINY_VIT_SAM, seed=4)
    path = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    loaded = load_sam(path)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)


def test_mobile_sam_unused_head_keys_are_dropped(tmp_path) -> None:
    model = random_sam(TINY_TINYVIT_SAM, seed=5)
    state = dict(model.state_dict())
    state["image_encoder.norm_head.weight"] = torch.ones(48)
    state["image_encoder.head.weight"] = torch.ones(1000, 48)
    path = tmp_path / "mobile.pt"
    torch.save(state, path)
    # TinyViT's input size is not in its weights: MobileSAM runs at 1024, so compare the weights only.
    loaded = read_checkpoint(path)
    assert set(loaded.state_dict) == set(model.state_dict())


def test_our_safetensors_carry_their_architecture(tmp_path) -> None:
    model = random_sam(TINY_TINYVIT_SAM, seed=6)
    path = save_checkpoint(model, TINY_TINYVIT_SAM, tmp_path / "ours.safetensors")
    loaded = read_checkpoint(path)
    assert loaded.source_format == "ours" and loaded.config == TINY_TINYVIT_SAM
    rebuilt = load_sam(path)
    x = torch.rand(1, 3, 256, 256) * 255
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt.encode_image(x), model.encode_image(x), rtol=0, atol=0)


def test_named_model_with_another_architecture_is_refused(tmp_path) -> None:
    path = tmp_path / "small.pth"
    torch.save(random_sam(TINY_VIT_SAM).state_dict(), path)
    with pytest.raises(CheckpointError, match="not the sam_vit_b architecture"):
        build_sam("sam_vit_b", checkpoint=path)


def test_partial_checkpoint_names_the_missing_keys(tmp_path) -> None:
    state = dict(random_sam(TINY_VIT_SAM).state_dict())
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): mask_decoder.iou_token.weight") as info:
        load_sam(path)
    assert "unexpected keys (1): mask_decoder.extra.weight" in str(info.value)


def test_truncated_checkpoint_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "truncated.pth"
    torch.save(random_sam(TINY_VIT_SAM).state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_sam(path)
    broken = tmp_path / "broken.safetensors"
    save_file({"a": torch.zeros(100)}, str(broken))
    broken.write_bytes(broken.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_sam(broken)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickles_with_code_are_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weights": _Payload()}, handle)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_sam(path)


def test_non_sam_state_dict_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        load_sam(path)


def test_build_needs_a_name_or_a_checkpoint() -> None:
    with pytest.raises(ValueError, match="model name"):
        build_sam()


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match="Did you mean 'sam_vit_b'"):
        build_sam("sam_vit_bb")


def test_missing_registered_weights_say_where_to_put_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError, match=r"put 'sam_vit_b_01ec64.pth' in .*") as info:
        build_sam("sam_vit_b")
    assert str(tmp_path) in str(info.value) and "checkpoint=" in str(info.value)


def test_random_architecture_without_weights() -> None:
    model = build_sam("mobile_sam", pretrained=False, device="cpu")
    assert infer_config(model.state_dict()) == get_spec("mobile_sam").config
    parameters = sum(p.numel() for p in model.image_encoder.parameters())
    assert 5_000_000 < parameters < 7_500_000


def test_hugging_face_model_folder_loads(tmp_path) -> None:
    import transformers

    config = transformers.SamConfig(
        vision_config={
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mlp_dim": 256,
            "image_size": 256,
            "patch_size": 16,
            "window_size": 4,
            "global_attn_indexes": [1],
            "output_channels": 32,
            "num_pos_feats": 16,
        },
        prompt_encoder_config={
            "hidden_size": 32,
            "image_size": 256,
            "patch_size": 16,
            "mask_input_channels": 8,
        },
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": 32,
        },
    )
    hf_model = transformers.SamModel(config).eval()
    hf_model.save_pretrained(tmp_path / "hf-sam")
    ours = build_sam(checkpoint=tmp_path / "hf-sam", device="cpu")
    expected = dataclasses.replace(TINY_VIT_SAM, decoder_heads=4)
    assert infer_config(ours.state_dict(), decoder_heads=4) == expected
    assert ours.mask_decoder.transformer.layers[0].self_attn.num_heads == 4
    hf_pe = hf_model.shared_image_embedding.positional_embedding
    torch.testing.assert_close(ours.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix, hf_pe)


def test_saved_checkpoints_are_byte_reproducible(tmp_path) -> None:
    model = random_sam(TINY_VIT_SAM, seed=8)
    first = save_checkpoint(model, TINY_VIT_SAM, tmp_path / "a.safetensors").read_bytes()
    second = save_checkpoint(model, TINY_VIT_SAM, tmp_path / "b.safetensors").read_bytes()
    assert first == second
    assert read_checkpoint(tmp_path / "a.safetensors").config == TINY_VIT_SAM
