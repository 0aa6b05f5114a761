"""Ontology: which phrases the detector is asked for, and which dataset class each phrase becomes.

Class ids are stable and documented: the distinct class names are numbered from 0 in the order in which
they first appear in the ontology (``{"yellow taxi": "car", "pedestrian": "person", "cab": "car"}`` gives
``car = 0, person = 1``). Each format offsets them by its own convention: YOLO uses the id itself, COCO
category ids and mask PNG values are ``id + 1`` (0 is background in a mask PNG).

A class may have several prompts and its own box threshold. In a mapping (or an ontology file) each entry
is either the plain ``prompt: class`` or ``class: {prompts: [...], box_threshold: 0.4}`` (or
``class: [prompts]``)::

    car: {prompts: [car, sedan, pickup truck], box_threshold: 0.4}
    pedestrian: person
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded_sam.text.prompts import parse_prompt


@dataclass(frozen=True)
class Ontology:
    """Prompts (as the pipeline parses them) and the class name of each, in the user's order.

    Attributes:
        prompts: distinct, normalised phrases sent to the detector (see `parse_prompt`).
        classes: the class name of each prompt (same length as `prompts`).

    Example::

        onto = Ontology.from_mapping({"yellow taxi": "car", "pedestrian": "person"})
        onto.class_names     # ("car", "person")
        onto.class_of("yellow taxi"), onto.class_id("person")   # ("car", 1)
    """

    prompts: tuple[str, ...]
    classes: tuple[str, ...]
    box_thresholds: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "box_thresholds", tuple((str(c), float(t)) for c, t in self.box_thresholds))
        if len(self.prompts) != len(self.classes):
            raise ValueError(
                f"an ontology needs one class per prompt; got {len(self.prompts)} prompts and "
                f"{len(self.classes)} classes"
            )
        if not self.prompts:
            raise ValueError('the ontology is empty: give at least one class, e.g. --classes "car,person"')
        if len(set(self.prompts)) != len(self.prompts):
            raise ValueError(f"prompts must be distinct; got {list(self.prompts)}")
        for prompt in self.prompts:
            if parse_prompt(prompt) != [prompt]:
                raise ValueError(
                    f"prompt {prompt!r} is not one normalised phrase; build ontologies with "
                    "Ontology.from_classes / from_mapping, which normalise for you"
                )
        for name in self.classes:
            if not isinstance(name, str) or not name.strip() or name != name.strip():
                raise ValueError(f"class names must be non-empty strings without outer spaces; got {name!r}")
        for name, threshold in self.box_thresholds:
            if name not in self.classes:
                raise ValueError(f"box_threshold given for {name!r}, which is not a class of the ontology")
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"the box_threshold of class {name!r} must lie in [0, 1]; got {threshold}")

    @classmethod
    def from_classes(cls, classes: str | Iterable[str]) -> Ontology:
        """Identity ontology: each phrase is its own class ("car, person" or ["car", "person"])."""
        phrases = parse_prompt(classes if isinstance(classes, str) else list(classes))
        return cls(tuple(phrases), tuple(phrases))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Ontology:
        """Prompt -> class name ({"yellow taxi": "car"}), or class -> {prompts: [...], box_threshold: t}
        (or class -> [prompts]); prompts are normalised like the pipeline does."""
        prompts: list[str] = []
        classes: list[str] = []
        thresholds: list[tuple[str, float]] = []
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise TypeError(f"ontology keys must be strings; got {key!r}")
            if isinstance(value, str):
                pairs = [(key, value)]
            else:
                spec = _class_spec(key, value)
                pairs = [(prompt, key) for prompt in spec["prompts"]]
                if spec.get("box_threshold") is not None:
                    thresholds.append((key.strip(), _fraction(spec["box_threshold"], key)))
            for prompt, name in pairs:
                parsed = parse_prompt(prompt) if isinstance(prompt, str) else []
                if len(parsed) != 1:
                    raise ValueError(
                        f"ontology prompt {prompt!r} must be exactly one phrase (no '.', ',' or ';' "
                        f"separators); it parses as {parsed}"
                    )
                if parsed[0] in prompts:
                    raise ValueError(f"ontology prompt {prompt!r} appears twice (after normalisation)")
                prompts.append(parsed[0])
                classes.append(name.strip())
        return cls(tuple(prompts), tuple(classes), tuple(thresholds))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Ontology:
        """Read a YAML or JSON file: a mapping ``prompt: class`` or a list of class names.

        YAML may wrap the mapping in an ``ontology:`` key. YAML needs PyYAML (``pip install pyyaml``).
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"ontology file {file} does not exist")
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"ontology file {file} is not valid JSON: {e}") from e
        else:
            data = _load_yaml(text, file)
        if isinstance(data, Mapping) and set(data) == {"ontology"}:
            data = data["ontology"]
        if isinstance(data, Mapping):
            return cls.from_mapping(data)
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            return cls.from_classes(data)
        raise ValueError(
            f"ontology file {file} must hold a mapping 'prompt: class' or a list of class names; "
            f"got {type(data).__name__}"
        )

    @property
    def class_names(self) -> tuple[str, ...]:
        """Distinct class names in order of first appearance; the index is the class id."""
        return tuple(dict.fromkeys(self.classes))

    def class_id(self, name: str) -> int:
        """0-based id of class `name`."""
        try:
            return self.class_names.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not a class of this ontology ({list(self.class_names)})") from None

    def class_of(self, prompt: str) -> str | None:
        """The class a detected phrase maps to, or None when the phrase is not in the ontology."""
        try:
            return self.classes[self.prompts.index(prompt)]
        except ValueError:
            return None

    def box_threshold_of(self, name: str) -> float | None:
        """The box threshold of class `name`, or None when it has none of its own."""
        return dict(self.box_thresholds).get(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"prompts": [...], "classes": [...]}`` (+ ``"box_thresholds"`` if any)."""
        data: dict[str, Any] = {"prompts": list(self.prompts), "classes": list(self.classes)}
        if self.box_thresholds:
            data["box_thresholds"] = {name: t for name, t in self.box_thresholds}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ontology:
        """Inverse of `to_dict`."""
        thresholds = tuple(data.get("box_thresholds", {}).items())
        return cls(tuple(data["prompts"]), tuple(data["classes"]), thresholds)


def as_ontology(value: Any) -> Ontology:
    """Accept an `Ontology`, a "car, person" string, a list of class names, a prompt -> class mapping, or
    a path to a YAML/JSON ontology file (a `Path`; strings are always read as class lists)."""
    if isinstance(value, Ontology):
        return value
    if isinstance(value, os.PathLike):
        return Ontology.load(value)
    if isinstance(value, Mapping):
        return Ontology.from_mapping(value)
    if isinstance(value, str) or (isinstance(value, Sequence) and all(isinstance(v, str) for v in value)):
        return Ontology.from_classes(value)
    raise TypeError(
        "classes must be a 'car, person' string, a list of names, a {prompt: class} mapping, an Ontology "
        f"or a Path to an ontology file; got {type(value).__name__}"
    )


def _load_yaml(text: str, file: Path) -> Any:
    try:
        import yaml
    except ImportError as e:
        raise ImportError(
            f"reading the YAML ontology {file} needs PyYAML: `pip install pyyaml` (or use a .json file)"
        ) from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"ontology file {file} is not valid YAML: {e}") from e


def _class_spec(name: str, value: Any) -> Mapping[str, Any]:
    """``class: [prompts]`` or ``class: {prompts: [...], box_threshold: t}`` as a checked mapping."""
    spec = {"prompts": value} if isinstance(value, list) else value
    if not isinstance(spec, Mapping) or not isinstance(spec.get("prompts", [name]), list):
        raise ValueError(
            f"ontology entry {name!r} must be a class name (prompt: class), a list of prompts or "
            f"{{prompts: [...], box_threshold: 0.4}}; got {value!r}"
        )
    unknown = sorted(set(spec) - {"prompts", "box_threshold"})
    if unknown:
        raise ValueError(f"ontology class {name!r}: unknown keys {unknown} (use prompts, box_threshold)")
    if not spec.get("prompts", [name]):
        raise ValueError(f"ontology class {name!r} has an empty list of prompts")
    return {"prompts": spec.get("prompts", [name]), "box_threshold": spec.get("box_threshold")}


def _fraction(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the box_threshold of class {name!r} must be a number; got {value!r}") from e
