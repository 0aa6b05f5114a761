"""Settings of the diffusers backend, in a module of their own: both the public `inpaint` and
`inpaint.diffusers_backend` use them, and neither imports the other at load time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplaceSettings:
    """Settings of the diffusers backend.

    Attributes:
        steps: denoising steps.
        guidance_scale: classifier-free guidance strength (1 disables guidance).
        seed: seed of the initial noise, for repeatable results.
        negative_prompt: what the repainted region should not show.
        max_side: the image is scaled so that its long side is at most this (then rounded to a multiple
            of 8) for the diffusion model, and the result scaled back.
    """

    steps: int = 25
    guidance_scale: float = 7.5
    seed: int = 0
    negative_prompt: str | None = None
    max_side: int = 512

    def __post_init__(self) -> None:
        if self.steps < 1 or self.max_side < 8:
            raise ValueError(
                f"need steps >= 1 and max_side >= 8; got steps={self.steps}, max_side={self.max_side}"
            )
