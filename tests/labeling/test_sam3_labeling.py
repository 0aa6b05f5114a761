"""label_dataset with a SAM 3 pipeline (no SAM stage): every instance SAM 3 finds lands in the dataset."""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO

from grounded_sam.labeling import label_dataset
from grounded_sam.labeling.rules import QualityRules
from tests.labeling.helpers import ONTOLOGY
from tests.text.sam3_builders import tiny_sam3_pipeline


def test_coco_dataset_holds_the_sam3_pipelines_masks(scenes, tmp_path) -> None:
    folder, truth = scenes
    pipeline = tiny_sam3_pipeline()
    # a random SAM 3 draws overlapping masks for distinct objects: keep what two prompts of a class find
    every = QualityRules(duplicate_iou=1.0)
    summary = label_dataset(
        folder, ONTOLOGY, tmp_path / "ds", pipeline=pipeline, box_threshold=0.3, rules=every
    )
    assert summary.labelled == len(truth) == summary.images_per_split["train"]
    coco = COCO(str(tmp_path / "ds" / "annotations" / "instances_train.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    total = 0
    for image in coco.loadImgs(coco.getImgIds()):
        expected = pipeline.predict(folder / image["file_name"], list(ONTOLOGY), box_threshold=0.3)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert [names[a["category_id"]] for a in anns] == [ONTOLOGY[label] for label in expected.labels]
        for ann, mask in zip(anns, expected.masks, strict=True):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
        total += len(anns)
    assert total > 0 and total == sum(summary.instances_per_class.values())
