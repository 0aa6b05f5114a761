"""Export a SAM model: ``encoder.onnx``, ``decoder.onnx``, ``config.json`` (+ int8 files, X-AnyLabeling YAML).

The plain PyTorch modules are exported with ``torch.onnx.export(dynamo=True)``; the decoder follows the
official export's contract (see :mod:`grounded_sam.sam.onnx.decoder`) but takes ``orig_im_size`` at run
time. Files are written to a temporary folder inside ``out`` and moved into place when all are done,
``config.json`` last, so an interrupted export never leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import onnxscript.optimizer
import torch

from grounded_sam.sam.fast import plain
from grounded_sam.sam.fast.image_encoder import FastRelPosAttention
from grounded_sam.sam.modeling.image_encoder import RelPosAttention
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.onnx.config import (
    CONFIG_NAME,
    DECODER_INPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    OnnxModelConfig,
)
from grounded_sam.sam.onnx.decoder import OnnxPromptDecoder
from grounded_sam.sam.onnx.postprocess import LOW_RES, SCORES, append_postprocessing

logger = logging.getLogger(__name__)

EXPORT_OPSET = 18
"""The lowest opset the exporter writes natively (ONNX Runtime has run it since 1.14)."""
PROTOBUF_LIMIT = 2_000_000_000
"""Graphs whose weights pass this size (ONNX's 2 GB protobuf limit, with room) use external data."""


def export_onnx(
    sam: str | os.PathLike[str] | Sam,
    out: str | os.PathLike[str],
    *,
    opset: int = EXPORT_OPSET,
    quantize: bool = False,
    return_single_mask: bool = False,
    external_data: bool | None = None,
    model_name: str | None = None,
) -> OnnxModelConfig:
    """Write ``out/encoder.onnx``, ``out/decoder.onnx``, ``out/config.json`` and an X-AnyLabeling YAML.

    Args:
        sam: a registered name (``sam_vit_b``, ``mobile_sam``, ``demo_sam``, ...), a checkpoint path, or a
            built :class:`Sam`.
        out: the folder to write (created; files of an earlier export there are replaced).
        opset: the ONNX opset, 18 or newer.
        quantize: also write ``encoder.int8.onnx`` / ``decoder.int8.onnx`` (dynamic int8 weights) and
            record their measured mask IoU against float32 in ``config.json``.
        return_single_mask: the decoder returns one mask per prompt, chosen as the official export does.
        external_data: store the encoder's weights in ``encoder.onnx.data``; ``None`` decides from their
            size (needed above 2 GB, e.g. ViT-H).
        model_name: the name written to ``config.json`` (default: the registry name or file name).

    Example:
        >>> config = export_onnx("demo_sam", "exported/demo")  # doctest: +SKIP
        >>> config.files["decoder"].path  # doctest: +SKIP
        'decoder.onnx'
    """
    model, name = _resolve_model(sam, model_name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if external_data is None:
        external_data = _weight_bytes(model.image_encoder) > PROTOBUF_LIMIT
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        work = Path(tmp)
        export_encoder(model, work / "encoder.onnx", opset, external_data)
        export_decoder(model, work / "decoder.onnx", opset, return_single_mask)
        config = _model_config(model, name, opset, return_single_mask)
        config = config.with_files(work, {"encoder": "encoder.onnx", "decoder": "decoder.onnx"})
        if quantize:
            from grounded_sam.sam.onnx.quantize import quantize_export

            config = quantize_export(work, config)
        from grounded_sam.sam.onnx.xanylabeling import write_xanylabeling

        config = write_xanylabeling(work, config)
        (out / CONFIG_NAME).unlink(missing_ok=True)  # an earlier export's: it no longer matches the files
        for item in sorted(work.iterdir()):
            if item.name != CONFIG_NAME:  # written last, below: its presence marks a complete export
                os.replace(item, out / item.name)
        config.save(out)
    return config


def _model_config(model: Sam, name: str, opset: int, return_single_mask: bool) -> OnnxModelConfig:
    """What a runtime needs besides the graphs: sizes, normalisation, mask threshold (no files yet)."""
    return OnnxModelConfig(
        model=name,
        image_size=model.image_size,
        embedding_size=model.prompt_encoder.image_embedding_size[0],
        pixel_mean=tuple(float(v) for v in model.pixel_mean.flatten()),
        pixel_std=tuple(float(v) for v in model.pixel_std.flatten()),
        mask_threshold=float(model.mask_threshold),
        opset=opset,
        return_single_mask=return_single_mask,
    )


def export_encoder(model: Sam, path: Path, opset: int, external_data: bool) -> None:
    """The image encoder: ``input_image`` (1, 3, S, S) normalised and padded → ``image_embeddings``.

    The ViT's attention is exported as :class:`~grounded_sam.sam.fast.image_encoder.FastRelPosAttention`
    computes it: the relative-position bias of a global block a band of query rows at a time, so ONNX
    Runtime never holds the full (heads, tokens, tokens) bias and scores (~800 MB each at ViT-B/1024).
    """
    size = model.image_size
    example = torch.zeros(1, 3, size, size)
    program = _quiet_export(
        model.image_encoder,
        (example,),
        opset,
        network=_chunked_attention,
        input_names=[ENCODER_INPUT],
        output_names=[ENCODER_OUTPUT],
    )
    program.save(str(path), external_data=external_data)
    onnx.checker.check_model(str(path))


def export_decoder(model: Sam, path: Path, opset: int, return_single_mask: bool) -> None:
    """Prompt encoder + mask decoder + post-processing with the official decoder's inputs and outputs."""
    wrapper = OnnxPromptDecoder(model, return_single_mask).eval()
    grid, channels = model.prompt_encoder.image_embedding_size, model.prompt_encoder.embed_dim
    low = model.prompt_encoder.mask_input_size
    example = (
        torch.zeros(1, channels, *grid),
        torch.tensor([[[10.0, 10.0], [20.0, 20.0]]]),
        torch.tensor([[2.0, 3.0]]),
        torch.zeros(1, 1, *low),
        torch.zeros(1),
    )
    # Prompts stay shorter than the image's tokens (a branch of the attention depends on it).
    points = torch.export.Dim("num_points", min=1, max=grid[0] * grid[1] - 16)
    program = _quiet_export(
        wrapper,
        example,
        opset,
        input_names=list(DECODER_INPUTS),
        output_names=[LOW_RES, SCORES],
        dynamic_shapes={
            "image_embeddings": None,
            "point_coords": {1: points},
            "point_labels": {1: points},
            "mask_input": None,
            "has_mask_input": None,
        },
    )
    proto = program.model_proto
    append_postprocessing(proto, model.image_size)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


@contextlib.contextmanager
def _swapped(module: torch.nn.Module, swap: Callable[[torch.nn.Module], object]) -> Iterator[None]:
    """Within the block, ``module`` as ``swap`` makes it (module classes swapped in place); every part's
    class is restored afterwards."""
    classes = [(part, type(part)) for part in module.modules()]
    swap(module)
    try:
        yield
    finally:
        for part, cls in classes:
            part.__class__ = cls


def _chunked_attention(module: torch.nn.Module) -> None:
    """The plain network, but for the ViT's attention, whose chunked bias keeps a global block's memory
    bounded (the chunks are fixed by the image size, so the graph is static)."""
    plain(module)
    for part in module.modules():
        if type(part) is RelPosAttention:
            part.__class__ = FastRelPosAttention


def _quiet_export(
    module: torch.nn.Module,
    args: tuple,
    opset: int,
    *,
    network: Callable[[torch.nn.Module], object] = plain,
    **options: object,
) -> torch.onnx.ONNXProgram:
    """``torch.onnx.export(dynamo=True)`` in eval mode, without its progress lines on stdout.

    ``network`` swaps the parts to export in (default: the plain network, as the paper's figure reads; the
    fast drop-ins' paths depend on the prompt count); ``module`` is as it was afterwards.

    Opsets below :data:`EXPORT_OPSET` are refused: the exporter reaches them by a version conversion that
    fails on some of SAM's ops (Pad, Split) and then silently keeps opset 18.
    """
    if opset < EXPORT_OPSET:
        raise ValueError(f"opset {opset} is not supported: use opset {EXPORT_OPSET} or newer")
    module = module.eval()
    with _swapped(module, network), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()) as printed:
        program = torch.onnx.export(
            module,
            args,
            None,
            dynamo=True,
            verbose=False,
            optimize=False,
            opset_version=opset,
            **options,
        )
    logger.debug("torch.onnx.export: %s", printed.getvalue())
    # Constant folding only: weights become initializers again (transposes folded), which int8
    # quantization needs; the exporter's full optimizer takes tens of minutes on a ViT's graph.
    onnxscript.optimizer.fold_constants(program.model)
    onnxscript.optimizer.remove_unused_nodes(program.model)
    return program


def _resolve_model(sam: str | os.PathLike[str] | Sam, model_name: str | None) -> tuple[Sam, str]:
    """A float32 CPU model in eval mode, and the name to record for it."""
    if isinstance(sam, Sam):
        model, name = sam, model_name or "sam"
    else:
        from grounded_sam.sam.build import build_sam

        path = Path(sam).expanduser()
        if path.exists():
            model, name = build_sam(None, checkpoint=path, device="cpu"), path.name
        else:
            model, name = build_sam(str(sam), device="cpu"), str(sam)
    return model.to("cpu", torch.float32).eval(), model_name or name


def _weight_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())
