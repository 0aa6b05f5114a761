"""``grounded-sam serve``: the segmentation pipelines over HTTP (JSON masks) and as a Label Studio ML
backend. Needs the ``serve`` extra (FastAPI, uvicorn, httpx, python-multipart).

Example:
    >>> from grounded_sam.serve import ServeConfig, create_app  # doctest: +SKIP
    >>> uvicorn.run(create_app(ServeConfig()), host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from grounded_sam.serve.app import create_app
from grounded_sam.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
