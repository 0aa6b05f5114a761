"""The grounded_sam web app: ``grounded-sam app`` or ``streamlit run apps/streamlit_app.py``.

Pick an example or upload an image, type what to find ("window. door"), refine a mask by clicking,
segment everything, remove or replace what was found, and download masks (PNG zip), COCO json or the
overlay. The page is :mod:`grounded_sam.ui.page`; its logic lives in :mod:`grounded_sam.ui`.

Environment:
    GROUNDED_SAM_APP_PIPELINE: ``package.module:factory`` returning a ``GroundedSAM`` to serve instead of
        the default (e.g. ``tests.pipelines:scripted_pipeline`` in the tests; the module must be importable).
    GROUNDED_SAM_SAM_MODEL, GROUNDED_SAM_DETECTOR: weights of the default pipeline (else the embedded demo).
    GROUNDED_SAM_INPAINT_MODEL: a diffusers inpainting model folder, for "replace with a prompt".
    GROUNDED_SAM_APP_MAX_UPLOAD_MB: the upload size limit (default 20).
"""

from grounded_sam.ui.page import render

render()
