from __future__ import annotations

import json

import pytest

from grounded_sam.labeling import Ontology
from grounded_sam.labeling.ontology import as_ontology


def test_classes_are_identity_and_normalised() -> None:
    onto = Ontology.from_classes("Car, person.  Traffic Light;car")
    assert onto.prompts == ("car", "person", "traffic light")
    assert onto.classes == onto.prompts and onto.class_names == onto.prompts
    assert as_ontology(["car", "person"]).class_names == ("car", "person")


def test_mapping_ids_follow_first_appearance() -> None:
    onto = Ontology.from_mapping({"Yellow Taxi": "car", "pedestrian": "person", "cab": "car", "bus": "bus"})
    assert onto.prompts == ("yellow taxi", "pedestrian", "cab", "bus")
    assert onto.class_names == ("car", "person", "bus")
    assert [onto.class_id(n) for n in ("car", "person", "bus")] == [0, 1, 2]
    assert onto.class_of("cab") == "car" and onto.class_of("tram") is None
    with pytest.raises(KeyError, match="tram"):
        onto.class_id("tram")


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"car. bus": "car"}, "exactly one phrase"),
        ({"car": "car", "CAR": "vehicle"}, "twice"),
        ({"car": " "}, "non-empty"),
        ({}, "empty"),
    ],
)
def test_bad_mappings(mapping, match) -> None:
    with pytest.raises(ValueError, match=match):
        Ontology.from_mapping(mapping)


def test_load_yaml_and_json(tmp_path) -> None:
    (tmp_path / "o.yaml").write_text("ontology:\n  yellow taxi: car\n  pedestrian: person\n")
    (tmp_path / "o.json").write_text(json.dumps({"yellow taxi": "car", "pedestrian": "person"}))
    (tmp_path / "list.yml").write_text("- car\n- person\n")
    assert Ontology.load(tmp_path / "o.yaml") == Ontology.load(tmp_path / "o.json")
    assert as_ontology(tmp_path / "o.yaml").classes == ("car", "person")
    assert Ontology.load(tmp_path / "list.yml").prompts == ("car", "person")
    (tmp_path / "bad.yaml").write_text("42\n")
    with pytest.raises(ValueError, match="mapping"):
        Ontology.load(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError):
        Ontology.load(tmp_path / "missing.yaml")
    with pytest.raises(TypeError):
        as_ontology(42)
