"""A drop-in for TinyViT's window attention that gathers its offset bias once, not at every call."""

from __future__ import annotations

from typing import Any

import torch

from grounded_sam.sam.modeling.tiny_vit import WindowAttention


class FastWindowAttention(WindowAttention):
    """:class:`WindowAttention` whose gathered (heads, N, N) bias is cached in eval mode without autograd.

    The cache is keyed on the table's storage, version, dtype and device, so loads and in-place edits
    invalidate it; training, or a table needing gradients, gathers afresh.
    """

    _bias_cache: tuple[tuple[Any, ...], torch.Tensor] | None = None

    def gathered_bias(self) -> torch.Tensor:
        """The (heads, N, N) additive attention bias for the window's N tokens."""
        table = self.attention_biases
        if self.training or (torch.is_grad_enabled() and table.requires_grad):
            return super().gathered_bias()
        key = (table.data_ptr(), table._version, table.dtype, table.device)
        if self._bias_cache is None or self._bias_cache[0] != key:
            self._bias_cache = (key, table.detach()[:, self.attention_bias_idxs])
        return self._bias_cache[1]

    def train(self, mode: bool = True) -> FastWindowAttention:
        self._bias_cache = None
        return super().train(mode)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        self._bias_cache = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
