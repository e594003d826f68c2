"""easy-vqa loader and the built-in vocabulary."""

from __future__ import annotations

from f3ocus.data.easy_vqa import easy_vqa_answers, load_easy_vqa, question_type
from f3ocus.data.schema import FEATURES, column_values
from f3ocus.data.vocabulary import builtin_words, split_words


def test_limit_is_a_seeded_subset_with_schema_columns() -> None:
    first = load_easy_vqa("train", limit=3000, seed=1)
    again = load_easy_vqa("train", limit=3000, seed=1)
    other = load_easy_vqa("train", limit=3000, seed=2)
    assert len(first) == 3000 and first.features == FEATURES
    assert column_values(first, "question") == column_values(again, "question")
    assert column_values(first, "question") != column_values(other, "question")
    assert set(column_values(first, "source")) == {"easy-vqa"}
    assert set(column_values(first, "modality")) == {"synthetic"}
    assert set(column_values(first, "split")) == {"train"}
    assert set(column_values(first, "question_type")) == {"shape", "color", "yes_no"}
    assert first[0]["image"].size == (64, 64)


def test_question_type_and_label_follow_the_answer() -> None:
    ds = load_easy_vqa("test", limit=500, seed=0)
    answers = easy_vqa_answers()
    shapes = {"circle", "rectangle", "triangle"}
    colors = set(answers) - shapes - {"yes", "no"}
    expected = {"shape": shapes, "color": colors, "yes_no": {"yes", "no"}}
    for kind, answer, label in zip(column_values(ds, "question_type"), column_values(ds, "answer"),
                                   column_values(ds, "label")):
        assert answer in expected[kind]
        assert answers[label] == answer
    assert question_type("what color is the shape?") == "color"
    assert question_type("does the image not contain a gray shape?") == "yes_no"
    assert question_type("what is the blue shape?") == "shape"


def test_builtin_words_cover_every_builder_and_are_deterministic() -> None:
    words = builtin_words()
    assert words == sorted(set(words)) == builtin_words()
    for text in ["is there a triangle in the image?", "what color is the shape?", "cancer-associated stroma",
                 "which organ does this slice show?", "is there pleural thickening in this image?",
                 "grade 4", "x-ray", "immature granulocyte", "benign or normal", "yes", "no"]:
        assert set(split_words(text)) <= set(words), text
    assert split_words("Is there cancer-associated stroma?") == ["is", "there", "cancer", "associated", "stroma"]
