"""Every memory budget of the SAM package in one place: how much the fast paths compute at once.

They trade memory for speed on a CPU: a tensor under glibc's 32 MiB mmap threshold is recycled from the
allocator's heap instead of being page-faulted in anew each time, and a chunk that stays in cache between
being written and being read is faster than one streamed through memory. No result depends on them (tests
shrink them to force the chunked paths); code reads them as ``budgets.NAME`` at call time.
"""

# --- image encoder (grounded_sam.sam.modeling.image_encoder) ---
MAX_BIAS_ELEMENTS = 7 << 20
"""Elements of one additive attention-bias chunk (7 Mi floats = 28 MiB in fp32): small enough to stay in
cache and below the mmap threshold, large enough to keep kernel calls few (30 per ViT-B global block, 2 per
windowed block)."""

MIN_CHUNK_QUERIES = 768
"""Query rows a band of the global attention keeps at least: PyTorch's CPU flash-attention kernel uses its
largest query block (256) from 768 queries on, markedly faster for long key sequences."""

MLP_CHUNK_TOKENS = 2048
"""Tokens per band of the encoder's MLP, so its 4x wide hidden activation stays below the mmap threshold
(2048 x 3072 floats = 24 MiB at ViT-B)."""

# --- mask decoder (grounded_sam.sam.fast.mask_decoder) ---
PASS_BYTES = 16 << 20
"""Per-prompt image tokens decoded in one pass stay under this size (see ``prompts_per_pass``)."""

UPSCALE_BYTES = 8 << 20
"""Mask features (the second upscaling's output) computed at once, a band of grid rows at a time."""

SHARED_PROJECTIONS_MIN_PROMPTS = 12
"""Prompts decoded against one image from which the image side's shared projections are made
(``fast.transformer.SharedProjections``). ViT-B, one thread, image tokens made per call, blocks and final
attention: 8 prompts 134 ms plain / 137 ms projected, 16 prompts 249 / 235 ms, 1 prompt 25 / 38 ms."""

# --- segment everything (grounded_sam.sam.everything, grounded_sam.sam.fast.iou_gate) ---
UPSAMPLE_CHUNK_BYTES = 32 << 20
"""Candidate masks settled at once (``everything.full_resolution``), at about 32 bytes per output tile."""

WHOLE_MASK_BYTES = 16 << 20
"""Full-resolution logits of the masks upsampled whole at once when their contours are too ragged for tiles
(``everything.whole_masks``): 4 ViT-B 1024 x 1024 masks; the buffers are kept from batch to batch."""

GATE_CHUNK_ROWS = 128
"""Image tokens per chunk of the IoU gate: with :data:`GATE_PROMPTS` prompts a chunk is 4 MiB at C = 256."""

GATE_PROMPTS = 32
"""Prompts gated together (the batch of every chunk's matrix products)."""
