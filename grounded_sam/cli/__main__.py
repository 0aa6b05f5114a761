"""``python -m grounded_sam.cli``: the ``grounded-sam`` command without the console script."""

from grounded_sam.cli import app

app()
