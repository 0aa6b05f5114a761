"""The ``grounded-sam`` command line: one sub-command per job, each in its own module."""

from grounded_sam.cli.app import app

__all__ = ["app"]
