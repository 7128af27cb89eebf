"""A saved recipe still matches when the config only gained fields that hold their defaults."""

from llmneo.config import TeacherConfig
from llmneo.config.recipe import field_defaults, recipe_matches


def test_fields_added_later_match_at_their_defaults_only():
    defaults = field_defaults(TeacherConfig, "teacher.")
    assert defaults["teacher.train.lr_over_time_limit"] is True and defaults["teacher.max_length"] == 128
    current = {"teacher": TeacherConfig(name_or_path="m").model_dump(mode="json")}
    saved = {"teacher": {**current["teacher"], "train": dict(current["teacher"]["train"])}}
    del saved["teacher"]["train"]["lr_over_time_limit"]  # a teacher tuned before the field existed
    assert recipe_matches(saved, current, defaults)
    changed = {"teacher": {**current["teacher"], "train": {**current["teacher"]["train"], "lr_over_time_limit": False}}}
    assert not recipe_matches(saved, changed, defaults)  # not the default: the old teacher did not train so
    tuned_longer = {"teacher": {**saved["teacher"], "train": {**saved["teacher"]["train"], "epochs": 3.0}}}
    assert not recipe_matches(tuned_longer, current, defaults)
    assert not recipe_matches({**saved, "removed": 1}, current, defaults)  # a field the config no longer has
