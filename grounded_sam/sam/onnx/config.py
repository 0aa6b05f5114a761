"""``config.json`` of an exported model folder: what a runtime needs besides the ONNX files themselves."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grounded_sam.atomic import atomic_write_text
from grounded_sam.weights import sha256_of

CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
# The graphs' input and output names: the contract between the exporter and every runtime.
ENCODER_INPUT, ENCODER_OUTPUT = "input_image", "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")


@dataclass(frozen=True)
class OnnxFile:
    """One exported graph: its file name in the folder, its sha256, and its external-data file if any."""

    path: str
    sha256: str
    external_data: str | None = None


@dataclass(frozen=True)
class OnnxModelConfig:
    """The contents of ``config.json``.

    Attributes:
        model: the SAM model's name (registry name or checkpoint file name).
        image_size: side S of the encoder's square input; images are resized so their long side is S.
        embedding_size: side E of the image embedding; the decoder's ``mask_input`` is 4E x 4E.
        pixel_mean, pixel_std: RGB normalisation applied before the encoder (values in 0..255).
        mask_threshold: logits above it are inside a mask.
        opset: the ONNX opset of the files.
        return_single_mask: the decoder returns one mask per prompt (the official export's option).
        files: role ("encoder", "decoder", "encoder_int8", ...) → :class:`OnnxFile`.
        quantized_accuracy: measured agreement of the int8 files with float32 (see :mod:`.quantize`).
    """

    model: str
    image_size: int
    embedding_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    mask_threshold: float
    opset: int
    return_single_mask: bool
    files: dict[str, OnnxFile] = field(default_factory=dict)
    quantized_accuracy: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``folder/config.json`` atomically."""
        return atomic_write_text(Path(folder) / CONFIG_NAME, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> OnnxModelConfig:
        """Read ``folder/config.json``; a clear error when it is missing or not ours."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: export a model folder with `grounded-sam export-onnx --out {folder}`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = {role: OnnxFile(**entry) for role, entry in data.pop("files").items()}
            data["pixel_mean"] = tuple(data["pixel_mean"])
            data["pixel_std"] = tuple(data["pixel_std"])
            return cls(files=files, **data)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a grounded_sam ONNX config: {error}") from error

    def with_files(self, folder: str | os.PathLike[str], roles: dict[str, str]) -> OnnxModelConfig:
        """This config listing ``roles`` too (role → file name in ``folder``), with sha256 and data file."""
        files = dict(self.files)
        for role, name in roles.items():
            data = Path(folder) / f"{name}.data"
            files[role] = OnnxFile(name, sha256_of(Path(folder) / name), data.name if data.exists() else None)
        return dataclasses.replace(self, files=files)

    def file(self, folder: str | os.PathLike[str], role: str) -> Path:
        """The path of the ``role`` file in ``folder``; a clear error when the export has none."""
        if role not in self.files:
            raise ValueError(f"{folder} has no {role} file (it has {sorted(self.files)})")
        return Path(folder) / self.files[role].path
