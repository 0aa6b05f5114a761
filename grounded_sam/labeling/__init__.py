"""Auto-labelling: a folder of images + class names → a COCO, YOLO or mask dataset.

Resumable (atomic per-image files and records; a re-run skips what is done and gives the same dataset),
checked against a settings fingerprint, and able to scale out on Ray (``engine="ray"``).

Example::

    from grounded_sam.labeling import label_dataset

    ontology = {"yellow taxi": "car", "pedestrian": "person"}
    summary = label_dataset("photos", ontology, "dataset", format="coco")
    print(summary.labelled, summary.instances_per_class)
"""

from grounded_sam.labeling.engine import ImageOutcome, LabelingSummary, ProgressUpdate, label_dataset
from grounded_sam.labeling.manifest import (
    DATASET_FORMATS,
    DatasetFormat,
    LabelingSettings,
    SettingsMismatchError,
    parse_splits,
    split_of,
)
from grounded_sam.labeling.ontology import Ontology
from grounded_sam.labeling.scan import SkippedFile
from grounded_sam.labeling.state import DatasetBusyError, OutputFolderError

__all__ = [
    "DATASET_FORMATS",
    "DatasetBusyError",
    "DatasetFormat",
    "ImageOutcome",
    "LabelingSettings",
    "LabelingSummary",
    "Ontology",
    "OutputFolderError",
    "ProgressUpdate",
    "SettingsMismatchError",
    "SkippedFile",
    "label_dataset",
    "parse_splits",
    "split_of",
]
