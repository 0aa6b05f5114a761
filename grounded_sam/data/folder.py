"""Scene folders on disk: a PNG per scene plus a ground-truth JSON beside it, written atomically.

JSON layout (one file per image, `<stem>.json` next to `<stem>.png`)::

    {"image": "scene_000000.png", "height": H, "width": W, "seed": <scene seed>, "background": "photo",
     "box_format": "xyxy_exclusive",
     "annotations": [{"label": "red circle", "shape": "circle", "color": "red",
                      "box": [x1, y1, x2, y2], "area": <pixels>,
                      "segmentation": {"size": [H, W], "counts": "<COCO compressed RLE>"}}, ...]}

Boxes follow the `scenes` convention (pixel edges, x2 / y2 exclusive); `segmentation` is the output of
`pycocotools.mask.encode` with `counts` decoded to an ASCII string.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from grounded_sam.atomic import atomic_write_bytes
from grounded_sam.data.scenes import Scene, SceneConfig, iter_scenes
from grounded_sam.ops.rle import masks_to_rles, rles_to_masks

BOX_FORMAT = "xyxy_exclusive"


def scene_record(scene: Scene, image_name: str) -> dict[str, Any]:
    """The JSON-ready ground truth of `scene` (layout in the module docstring)."""
    h, w = scene.image.shape[:2]
    annotations = [
        {
            "label": label,
            "shape": shape,
            "color": color,
            "box": [float(v) for v in box],
            "area": int(mask.sum()),
            "segmentation": rle,
        }
        for label, shape, color, box, mask, rle in zip(
            scene.labels,
            scene.shapes,
            scene.colors,
            scene.boxes,
            scene.masks,
            masks_to_rles(scene.masks),
            strict=True,
        )
    ]
    return {
        "image": image_name,
        "height": h,
        "width": w,
        "seed": scene.seed,
        "background": scene.background,
        "box_format": BOX_FORMAT,
        "annotations": annotations,
    }


def write_scene(scene: Scene, image_path: str | os.PathLike[str]) -> Path:
    """Write `scene` as a PNG at `image_path` and its ground truth at the same path with `.json`."""
    path = Path(image_path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"scene images are written as PNG; give a path ending in .png, not {path}")
    buffer = io.BytesIO()
    Image.fromarray(scene.image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    # The JSON goes last: its presence marks a complete pair.
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(scene_record(scene, path.name)).encode("utf-8"))
    return path


def write_scene_folder(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    config: SceneConfig = SceneConfig(),  # noqa: B008 (frozen, immutable)
    per_folder: int | None = None,
) -> list[Path]:
    """Write scenes 0 .. n-1 of the stream `seed` (see `iter_scenes`) into `out_dir`.

    Files are `scene_{i:06d}.png` + `.json`; with `per_folder`, they go into numbered subfolders
    `{i // per_folder:04d}/`. Existing files are replaced. Returns the image paths in scene order.

    Example::

        paths = write_scene_folder("data/train", n=1000, seed=0, per_folder=500)
        scene = load_scene(paths[0].with_suffix(".json"))
    """
    if per_folder is not None and per_folder < 1:
        raise ValueError(f"per_folder must be >= 1 or None; got {per_folder}")
    root = Path(out_dir)
    paths = []
    for i, scene in enumerate(iter_scenes(seed, n, config)):
        folder = root / f"{i // per_folder:04d}" if per_folder else root
        paths.append(write_scene(scene, folder / f"scene_{i:06d}.png"))
    return paths


def load_scene(json_path: str | os.PathLike[str]) -> Scene:
    """Read back a scene written by `write_scene`: image from the PNG named in the JSON, masks from RLE."""
    path = Path(json_path)
    if not path.is_file():
        raise FileNotFoundError(f"no scene ground truth at {path}")
    record = json.loads(path.read_text(encoding="utf-8"))
    image_path = path.parent / record["image"]
    if not image_path.is_file():
        raise FileNotFoundError(
            f"{path} names the image {record['image']}, which is missing from {path.parent}"
        )
    with Image.open(image_path) as img:
        image = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    anns = record["annotations"]
    masks = rles_to_masks([a["segmentation"] for a in anns], record["height"], record["width"])
    return Scene(
        image=image,
        masks=masks,
        boxes=np.array([a["box"] for a in anns], dtype=np.float32).reshape(-1, 4),
        labels=[a["label"] for a in anns],
        shapes=[a["shape"] for a in anns],
        colors=[a["color"] for a in anns],
        background=record["background"],
        seed=record["seed"],
    )
