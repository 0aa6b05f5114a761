"""The Streamlit app's logic, free of Streamlit: uploads, session state, refine clicks, downloads.

The page itself is :mod:`grounded_sam.ui.page` (started by ``grounded-sam app``); everything it does goes
through the functions here so that it can be tested without a browser.
"""

from grounded_sam.ui.downloads import coco_json_bytes, masks_zip_bytes, overlay_png_bytes, png_bytes
from grounded_sam.ui.models import PIPELINE_ENV, Models, build_models, describe_models
from grounded_sam.ui.refine import EmbeddingCache, InstanceEdit, refine_instance
from grounded_sam.ui.state import AppState, click_to_pixels, instance_table
from grounded_sam.ui.uploads import EXAMPLES, UPLOAD_TYPES, UploadError, example_scene, read_upload

__all__ = [
    "EXAMPLES",
    "PIPELINE_ENV",
    "UPLOAD_TYPES",
    "AppState",
    "EmbeddingCache",
    "InstanceEdit",
    "Models",
    "UploadError",
    "build_models",
    "click_to_pixels",
    "coco_json_bytes",
    "describe_models",
    "example_scene",
    "instance_table",
    "masks_zip_bytes",
    "overlay_png_bytes",
    "png_bytes",
    "read_upload",
    "refine_instance",
]
