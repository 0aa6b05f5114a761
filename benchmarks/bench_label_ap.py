"""COCO AP of `grounded-sam label` with the embedded demo model on synthetic scenes (pycocotools COCOeval).

Labels a folder of demo scenes to COCO, writes the scenes' ground truth as COCO, and evaluates segm and
bbox AP; bbox AP is also computed with the detector's boxes (``detector_bbox``) instead of the masks'
boxes, to show what exporting the mask's box changes. Every exported bbox is checked to enclose its mask.

    python benchmarks/bench_label_ap.py [--scenes 30] [--seed 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from grounded_sam.data import load_scene, write_scene_folder
from grounded_sam.export.coco import coco_dataset
from grounded_sam.labeling import label_dataset
from grounded_sam.result import Result


def evaluate(gt: COCO, detections: list[dict], kind: str) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        found = gt.loadRes(detections)
        run = COCOeval(gt, found, kind)
        run.evaluate()
        run.accumulate()
        run.summarize()
    return float(run.stats[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}; load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = write_scene_folder(work / "images", args.scenes, seed=args.seed)
        scenes = {
            p.relative_to(work / "images").as_posix(): load_scene(p.with_suffix(".json")) for p in paths
        }
        classes = sorted({label for scene in scenes.values() for label in scene.labels})
        label_dataset(work / "images", classes, work / "ds", format="coco")
        predicted = json.loads((work / "ds" / "annotations" / "instances_train.json").read_text())
        names = {c["id"]: c["name"] for c in predicted["categories"]}
        truth = [(img["file_name"], _truth_result(scenes[img["file_name"]])) for img in predicted["images"]]
        gt_data = coco_dataset(truth, {name: cid for cid, name in names.items()})
        by_name = {img["file_name"]: img["id"] for img in gt_data["images"]}
        pred_id = {img["id"]: by_name[img["file_name"]] for img in predicted["images"]}
        gt_path = work / "gt.json"
        gt_path.write_text(json.dumps(gt_data))
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(gt_path))
        anns = [{**a, "image_id": pred_id[a["image_id"]]} for a in predicted["annotations"]]
        outside = 0
        for ann in anns:
            rle = ann["segmentation"]
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            x, y, w, h = (int(v) for v in ann["bbox"])
            inside = np.zeros_like(mask)
            inside[y : y + h, x : x + w] = 1
            outside += int((mask & ~inside.astype(bool)).any())
        segm = evaluate(gt, anns, "segm")
        bbox = evaluate(gt, anns, "bbox")
        detector = evaluate(gt, [{**a, "bbox": a["detector_bbox"]} for a in anns], "bbox")
    print(
        f"{args.scenes} demo scenes (seed {args.seed}), {len(anns)} labels, demo model, label --format coco"
    )
    print(f"segm AP {segm:.3f}; bbox AP {bbox:.3f} (mask boxes, exported) vs {detector:.3f} (detector boxes)")
    print(f"labels whose bbox does not enclose the mask: {outside}")
    print(f"load average after: {os.getloadavg()}")


def _truth_result(scene) -> Result:
    n = len(scene.labels)
    return Result(scene.masks, scene.boxes, list(scene.labels), np.ones(n), np.ones(n), scene.masks.shape[1:])


if __name__ == "__main__":
    main()
