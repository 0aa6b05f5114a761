"""Training of the embedded demo models: ``python -m grounded_sam.train sam`` (see :mod:`.sam_trainer`)."""

from grounded_sam.train.sam_trainer import SamTrainer, TrainConfig

__all__ = ["SamTrainer", "TrainConfig"]
