from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from grounded_sam.atomic import atomic_write_bytes, temp_name
from grounded_sam.naming import (
    MAX_STEM_BYTES,
    claim_stems,
    copy_name,
    output_stems,
    printable,
    safe_relative,
    safe_stem,
    short_hash,
)

LONG = "中" * 84 + ".png"  # 256 bytes: longer than a file name may be once a suffix is added
NAMES = [
    "dup.png",
    "dup_1.png",
    "nested/dup.png",
    "scan [red].png",
    "-x.png",
    "caf\udce9.png",
    "a\nb.png",
    LONG,
]


def test_output_stems_are_distinct_safe_and_mirror_the_tree() -> None:
    stems = output_stems([*NAMES, "dup.jpg"])
    assert len(set(stems)) == len(stems)
    assert stems[:5] == [
        f"dup~{hashlib.sha256(b'dup.png').hexdigest()[:8]}",
        "dup_1",
        "nested/dup",
        "scan [red]",
        "-x",
    ]
    assert stems[-1].startswith("dup~") and stems[-1] != stems[0]  # dup.png and dup.jpg meet on "dup"
    for stem in stems:
        for part in stem.split("/"):
            assert len(os.fsencode(part)) <= MAX_STEM_BYTES
            part.encode("utf-8")  # no undecodable bytes left
            assert "\n" not in part and "\\" not in part
    assert safe_stem("caf\udce9.png").startswith("caf_~")
    assert output_stems(["manifest.png"], reserved={"manifest"})[0].startswith("manifest~")


def test_safe_relative_keeps_the_suffix_and_is_stable() -> None:
    assert safe_relative("a/b c.png") == "a/b c.png"
    assert safe_relative(LONG).endswith(".png") and safe_relative(LONG) == safe_relative(LONG)
    assert safe_relative("中" * 70 + "x.png") != safe_relative("中" * 70 + "y.png")


def test_printable_shows_undecodable_bytes_and_control_characters() -> None:
    assert printable("caf\udce9.png") == "caf\\xe9.png"
    assert printable("a\nb\x1b.png") == "a\\nb\\x1b.png"
    assert printable("plain [red].png") == "plain [red].png"


@pytest.mark.parametrize("name", ["中" * 83 + ".png", "中" * 82 + ".jpeg", "x" * 255, "caf\udce9.png"])
def test_temp_names_fit_even_for_the_longest_file_names(tmp_path: Path, name: str) -> None:
    assert len(os.fsencode(temp_name(name))) <= 255
    target = tmp_path / name
    atomic_write_bytes(target, b"data")
    assert target.read_bytes() == b"data" and len(list(tmp_path.iterdir())) == 1


def test_placing_the_same_hard_link_again_leaves_no_temp_file(tmp_path: Path) -> None:
    from grounded_sam.atomic import atomic_path

    source, target = tmp_path / "a.png", tmp_path / "out.png"
    source.write_bytes(b"x")
    os.link(source, target)
    with atomic_path(target) as tmp:
        os.link(source, tmp)  # rename() of two names of one file does nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out.png"]


def test_claim_stems_gives_later_meetings_a_hash_and_keeps_known_stems() -> None:
    rels = ["a/x.png", "a/x.jpg", "x.png"]
    first = claim_stems(rels)
    assert first == {"a/x.jpg": "a/x", "a/x.png": f"a/x~{short_hash('a/x.png')}", "x.png": "x"}
    # a new image sorting first does not take a stem already given
    again = claim_stems([*rels, "a/x.bmp"], known=first)
    assert {rel: again[rel] for rel in rels} == first and again["a/x.bmp"] == f"a/x~{short_hash('a/x.bmp')}"
    # a stem given twice (a damaged state) is still made distinct
    clash = claim_stems(["p.png", "q.png"], known={"p.png": "s", "q.png": "s"})
    assert len(set(clash.values())) == 2
    assert copy_name("a/x.png", first["a/x.png"]) == f"a/x~{short_hash('a/x.png')}.png"
    assert copy_name("a/x.jpg", "a/x") == "a/x.jpg"
