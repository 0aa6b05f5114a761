"""A tiny random Grounding DINO (transformers) with a hand-written BERT vocabulary, built offline."""

from __future__ import annotations

import string
from pathlib import Path

import torch

# transformers hard-codes BERT's ids for [CLS], [SEP], '.' and '?' as the text encoder's phrase delimiters,
# so the test vocabulary keeps them at the same positions.
SPECIAL_POSITIONS = {
    0: "[PAD]",
    100: "[UNK]",
    101: "[CLS]",
    102: "[SEP]",
    103: "[MASK]",
    1012: ".",
    1029: "?",
}
WORDS = ["cat", "dog", "traffic", "light", "window", "door", "hy", "##dra", "##nt", "car", "person", ",", "!"]
VOCAB_SIZE = 1100


def write_vocab(folder: Path) -> Path:
    """A WordPiece vocabulary: BERT's special ids, a few words, and letters/digits so no word is unknown."""
    tokens = [f"[unused{i}]" for i in range(VOCAB_SIZE)]
    for position, token in SPECIAL_POSITIONS.items():
        tokens[position] = token
    pieces = WORDS + list(string.ascii_lowercase + string.digits)
    pieces += [f"##{char}" for char in string.ascii_lowercase + string.digits]
    for offset, piece in enumerate(pieces):
        tokens[200 + offset] = piece
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def tiny_processor(folder: Path):
    """A GroundingDinoProcessor of a BERT tokenizer on :func:`write_vocab` and a 64-pixel image processor."""
    from transformers import BertTokenizer, GroundingDinoImageProcessor, GroundingDinoProcessor

    # from_pretrained on the folder reads vocab.txt the same way on transformers 4.x and 5.x.
    tokenizer = BertTokenizer.from_pretrained(str(write_vocab(folder).parent), do_lower_case=True)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    return GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_model(seed: int = 0):
    """A random GroundingDinoForObjectDetection: Swin with 8 channels, d_model 32, 20 queries."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=64,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # transformers ties the box heads of layers 1.., so it needs at least two
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        num_queries=20,
    )
    torch.manual_seed(seed)
    return GroundingDinoForObjectDetection(config).eval()


def save_tiny_grounding_dino(folder: Path) -> Path:
    """Model and processor written with ``save_pretrained`` into ``folder``, as a Hub snapshot would be."""
    tiny_processor(folder).save_pretrained(folder)
    tiny_model().save_pretrained(folder)
    return folder
