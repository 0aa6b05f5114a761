"""Text → masks: ours vs the plain transformers route, with identical random weights.

Grounding DINO (the tiny checkpoint's architecture: Swin-T + BERT-base) and SAM ViT-B are built with
random weights; both routes get the same weights, image, prompt and thresholds. The transformers route
is what a transformers user writes: GroundingDinoProcessor → GroundingDinoForObjectDetection →
post_process_grounded_object_detection → SamProcessor(input_boxes) → SamModel → post_process_masks.

    python benchmarks/bench_pipeline.py [--repeats 2] [--boxes 20]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grounded_sam.data import SceneConfig, make_scene
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.sam import SamPredictor, build_sam
from grounded_sam.sam.convert_hf import official_sam_to_hf
from grounded_sam.text.grounding_dino import GroundingDinoDetector

PROMPT = "red circle. blue star. green square"


def random_models(folder: Path, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """Grounding DINO + processor, our SAM and transformers' SamModel holding the same random weights."""
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SamConfig,
        SamModel,
    )

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' offline BERT vocabulary
    from tests.text.gdino_builders import write_vocab

    torch.manual_seed(seed)
    detector = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    tokenizer = BertTokenizer(vocab=str(write_vocab(folder)), do_lower_case=True)
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer)
    sam = build_sam("sam_vit_b", pretrained=False, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in sam.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
    hf_sam = SamModel(SamConfig()).eval()
    hf_sam.load_state_dict(official_sam_to_hf(sam.state_dict()), strict=False)
    return detector, processor, sam, hf_sam


def transformers_route(detector, processor, hf_sam, image: np.ndarray, threshold: float, top: int) -> int:
    from transformers import SamImageProcessor, SamProcessor

    sam_processor = SamProcessor(image_processor=SamImageProcessor())
    inputs = processor(images=image, text=PROMPT.lower() + ".", return_tensors="pt")
    with torch.inference_mode():
        outputs = detector(**inputs)
    found = processor.post_process_grounded_object_detection(
        outputs, inputs.input_ids, threshold=threshold, text_threshold=0.0, target_sizes=[image.shape[:2]]
    )[0]
    boxes = found["boxes"][found["scores"].argsort(descending=True)[:top]]
    if len(boxes) == 0:
        return 0
    sam_inputs = sam_processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.inference_mode():
        sam_outputs = hf_sam(**sam_inputs, multimask_output=False)
    masks = sam_processor.image_processor.post_process_masks(
        sam_outputs.pred_masks, sam_inputs["original_sizes"], sam_inputs["reshaped_input_sizes"]
    )
    return int(masks[0].shape[0])


def timed(functions: list[Any], repeats: int) -> list[tuple[float, Any]]:
    """Best time and last value of each function; the repeats alternate between the functions, so a
    busy spell on the shared machine slows all of them rather than one."""
    best, values = [float("inf")] * len(functions), [None] * len(functions)
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            values[index] = function()
            best[index] = min(best[index], time.perf_counter() - start)
    return list(zip(best, values, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = make_scene(0, SceneConfig(size=(768, 1024))).image
    with tempfile.TemporaryDirectory() as folder:
        detector, processor, sam, hf_sam = random_models(Path(folder))
    # Random weights score every query alike, so both routes keep their best `--boxes` boxes instead.
    threshold = 0.0
    # Our detector swaps its faster attention into the model it is given, so it gets its own copy: the
    # transformers route keeps the unpatched model.
    text_stage = GroundingDinoDetector(
        copy.deepcopy(detector),
        processor,
        device="cpu",
        box_threshold=threshold,
        text_threshold=0.0,
        max_boxes=args.boxes,
    )
    ours = GroundedSAM(text_stage, SamPredictor(sam))

    def ours_route():
        ours.predictor.reset_image()  # no embedding reuse across repeats: measure the full job
        return ours.predict(image, PROMPT)

    def theirs_route():
        return transformers_route(detector, processor, hf_sam, image, threshold, args.boxes)

    load_before = os.getloadavg()[0]
    (ours_time, result), (theirs_time, count) = timed([ours_route, theirs_route], args.repeats)
    print(f"image {image.shape[1]}x{image.shape[0]}, prompt {PROMPT!r}, box threshold {threshold:.4f}")
    print(f"{'':14}{'seconds':>10}{'masks':>8}")
    print(f"{'ours':14}{ours_time:>10.2f}{len(result):>8}")
    print(f"{'transformers':14}{theirs_time:>10.2f}{count:>8}")
    print(f"ours/transformers = {ours_time / theirs_time:.3f}")
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
