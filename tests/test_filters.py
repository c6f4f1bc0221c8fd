"""The data-quality filters, each on rows made here with known duplicates and contamination."""

from __future__ import annotations

import json

import pytest

from syllabus.data.keys import normalise
from syllabus.errors import UserError
from syllabus.generators.filters import checks, decontaminate, exact, load_eval_set, minhash, run_filters
from syllabus.project import FiltersConfig

PROVENANCE = {
    "taxonomy_path": "mathematics/algebra",
    "discipline": "Algebra",
    "subject": "Linear Algebra I",
    "level": "undergraduate",
    "sessions": ["Eigenvalues"],
    "session_indices": [3],
    "key_concepts": ["eigenvalue", "eigenvector"],
    "difficulty": "single-session",
    "teacher": "teacher-model",
    "teacher_backend": "openai",
    "templates": {"question": "q-version", "answer": "a-version"},
    "sampling": {"question": {"temperature": 0.9}, "answer": {"temperature": 0.3}},
    "seed": 7,
    "round": 0,
}

MATRIX = (
    "Let A be a three by three real matrix with three distinct real eigenvalues. "
    "Prove that A is diagonalisable and find a basis of eigenvectors."
)


def row(index: int, question: str, answer: str = "A worked answer with its reasoning.", finish: str = "stop") -> dict:
    return {
        "prompt": [{"role": "user", "content": question}],
        "completion": [{"role": "assistant", "content": answer}],
        **PROVENANCE,
        "question_index": index,
        "finish_reason": finish,
        "content_hash": f"hash{index:04d}",
    }


def only(**changes) -> FiltersConfig:
    """Every filter off except the ones named (their settings as given)."""
    config = {
        "checks": {"empty_answer": False, "restated_question": False, "truncated": False},
        "exact": "off",
        "minhash": {"enabled": False},
        "embedding": {"enabled": False},
    }
    config.update(changes)
    return FiltersConfig.model_validate(config)


def dropped_by(dropped: list[dict]) -> dict[int, str]:
    return {r["question_index"]: r["filtered_by"] for r in dropped}


# Normalisation ------------------------------------------------------------------
def test_normalise_folds_case_whitespace_and_punctuation():
    assert normalise("  What IS a\tGroup?!  ") == normalise("what is a group") == "what is a group"
    assert normalise("well-known") == normalise("well known")
    assert normalise("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"  # NFKC


# Exact duplicates ------------------------------------------------------------------
EXACT_ROWS = [
    row(0, "What is a group?", "A set with an associative operation, identity and inverses."),
    row(1, "what is a GROUP", "A different answer to the same question."),
    row(2, "Define a ring.", "A ring is ..."),
    row(3, "What  is a group ?!", "A set with an associative operation, identity and inverses."),
    row(4, "Define a ring!", "Another ring answer."),
]


def test_exact_duplicates_of_the_question_keep_the_first():
    kept, dropped, report = run_filters(EXACT_ROWS, only(exact="question"))
    assert [r["question_index"] for r in kept] == [0, 2]
    assert dropped_by(dropped) == {1: "exact_duplicate", 3: "exact_duplicate", 4: "exact_duplicate"}
    details = {r["question_index"]: r["filter_detail"] for r in dropped}
    assert details[1] == "same question as mathematics/algebra#0"
    assert details[3] == "same question and answer as mathematics/algebra#0"
    assert details[4] == "same question as mathematics/algebra#2"
    assert report.counts == {"exact_duplicate": 3}


def test_exact_duplicates_of_question_and_answer_only():
    kept, dropped, _ = run_filters(EXACT_ROWS, only(exact="question_answer"))
    assert [r["question_index"] for r in kept] == [0, 1, 2, 4]
    assert dropped_by(dropped) == {3: "exact_duplicate"}


def test_exact_find_returns_positions_and_reasons():
    assert exact.find(EXACT_ROWS, "off") == {}
    assert set(exact.find(EXACT_ROWS, "question")) == {1, 3, 4}


# Near duplicates: MinHash ---------------------------------------------------------
NEAR_ROWS = [
    row(0, MATRIX),
    row(1, MATRIX + " Explain each step."),  # one extra sentence: Jaccard of 3-word shingles 0.89
    row(2, MATRIX.replace("three by three", "3 by 3")),  # a few words changed: Jaccard 0.64
    row(3, "Describe the causes of the French Revolution and how they built up over the eighteenth century."),
    row(
        4, "Describe the causes of the French Revolution and how they built up over the eighteenth century in France."
    ),  # two words more: Jaccard 0.88
    row(5, "State and prove the rank-nullity theorem for a linear map between finite-dimensional spaces."),
]


def test_minhash_marks_near_duplicates_and_names_the_kept_row():
    kept, dropped, report = run_filters(NEAR_ROWS, only(minhash={"enabled": True, "threshold": 0.8}))
    assert [r["question_index"] for r in kept] == [0, 2, 3, 5]
    assert dropped_by(dropped) == {1: "near_duplicate_minhash", 4: "near_duplicate_minhash"}
    details = {r["question_index"]: r["filter_detail"] for r in dropped}
    assert details[1].startswith("near duplicate of mathematics/algebra#0 (MinHash Jaccard ~")
    assert details[4].startswith("near duplicate of mathematics/algebra#3 ")
    assert report.counts == {"near_duplicate_minhash": 2}


def test_minhash_math_computes_what_datasketch_does():
    """The signatures and the banding are datasketch's (2.x, scheme affine32), computed without it."""
    import random

    import numpy as np

    datasketch = pytest.importorskip("datasketch")
    from syllabus.generators.filters.minhash_math import banding, signature

    for num_perm in (16, 64, 128):
        for hundredths in range(5, 101, 5):
            try:
                lsh = datasketch.MinHashLSH(threshold=hundredths / 100, num_perm=num_perm)
                expected: tuple[int, int] | None = (lsh.b, lsh.r)
            except ValueError:
                expected = None
            try:
                got: tuple[int, int] | None = banding(hundredths / 100, num_perm)
            except ValueError:
                got = None
            assert got == expected, (num_perm, hundredths)
    rng = random.Random(0)
    for _ in range(50):
        grams = [rng.randbytes(rng.randint(1, 30)) for _ in range(rng.randint(1, 40))]
        reference = datasketch.MinHash(num_perm=128, seed=minhash.SEED)
        reference.update_batch(grams)
        assert np.array_equal(reference.hashvalues.astype(np.uint32), signature(grams, 128, minhash.SEED))


def test_minhash_signs_a_block_of_rows_as_it_signs_each_row():
    """`signatures` (a block at once) gives each set's own signature, and a near duplicate whose
    kept row was signed in an earlier block is still marked."""
    import random

    import numpy as np

    from syllabus.generators.filters.minhash_math import signature, signatures

    rng = random.Random(1)
    sets = [[rng.randbytes(rng.randint(1, 20)) for _ in range(rng.randint(1, 30))] for _ in range(40)]
    assert np.array_equal(signatures(sets, 64, minhash.SEED), np.stack([signature(g, 64, minhash.SEED) for g in sets]))
    assert signatures([], 64, minhash.SEED).shape == (0, 64)

    filler = [
        row(i, f"Question {i} asks about topic number {i} in plain words, {i} times over.") for i in range(1, 300)
    ]
    rows = [row(0, MATRIX), *filler, row(300, MATRIX + " Explain each step.")]
    assert minhash.BLOCK < 300  # the two copies fall in different blocks
    marks = minhash.find(rows)
    assert marks[300][1].startswith("near duplicate of mathematics/algebra#0 ")
    assert set(marks) == {300}


def test_minhash_threshold_is_honoured():
    _, loose, _ = run_filters(NEAR_ROWS, only(minhash={"enabled": True, "threshold": 0.5}))
    assert dropped_by(loose) == {1: "near_duplicate_minhash", 2: "near_duplicate_minhash", 4: "near_duplicate_minhash"}
    _, strict, _ = run_filters(NEAR_ROWS, only(minhash={"enabled": True, "threshold": 0.99}))
    assert dropped_by(strict) == {}
    same = [row(0, MATRIX), row(1, MATRIX + " "), row(2, MATRIX + " Explain each step.")]
    for num_perm in (16, 128):  # no LSH banding exists for 0.99 with these: a lower one proposes candidates
        _, dropped, _ = run_filters(same, only(minhash={"enabled": True, "threshold": 0.99, "num_perm": num_perm}))
        assert dropped_by(dropped) == {1: "near_duplicate_minhash"}


def test_minhash_shingles_are_word_ngrams_of_normalised_text():
    assert sorted(minhash.shingles("A b, C d!", 3)) == [b"a b c", b"b c d"]
    assert minhash.shingles("Two words", 3) == [b"two words"]
    assert minhash.shingles("?!", 3) == []


# Length and format checks -----------------------------------------------------------
CHECK_ROWS = [
    row(0, "What is a group?", "A set with an associative operation, an identity and inverses."),
    row(1, "What is a ring?", "   ...  "),
    row(2, "What is a field?", "What is a field?"),
    row(
        3,
        "What is a module?",
        "A module over a ring R is an abelian group with a scalar action of R, and",
        finish="length",
    ),
    row(
        4,
        "What is a vector space?",
        "What is a vector space? A vector space is a module over a field: an abelian "
        "group with a scalar multiplication that distributes over addition in both arguments.",
    ),
    row(5, "What is a lattice?", "", finish="length"),
    row(6, "Explain the term homomorphism.", "Explain the term homomorphism"),
]


def test_checks_mark_empty_restated_and_truncated_answers():
    kept, dropped, report = run_filters(
        CHECK_ROWS, FiltersConfig.model_validate({"exact": "off", "minhash": {"enabled": False}})
    )
    assert [r["question_index"] for r in kept] == [0, 4]  # a real answer that opens with the question stays
    assert dropped_by(dropped) == {
        1: "empty_answer",
        2: "restated_question",
        3: "truncated",
        5: "empty_answer",
        6: "restated_question",
    }
    assert report.counts == {"empty_answer": 2, "restated_question": 2, "truncated": 1}


def test_each_check_can_be_switched_off():
    config = only(checks={"empty_answer": True, "restated_question": False, "truncated": False})
    assert dropped_by(run_filters(CHECK_ROWS, config)[1]) == {1: "empty_answer", 5: "empty_answer"}
    config = only(checks={"empty_answer": False, "restated_question": False, "truncated": True})
    assert dropped_by(run_filters(CHECK_ROWS, config)[1]) == {3: "truncated", 5: "truncated"}


def test_restatement_similarity():
    assert checks.restatement(["a", "b"], ["a", "b"]) == 1.0
    assert checks.restatement(["a", "b"], []) == 0.0


def test_the_restatement_bound_settles_the_check_as_the_full_ratio_would():
    """Below the threshold only the verdict matters; at or above it the value is difflib's ratio."""
    import random
    from difflib import SequenceMatcher

    rng = random.Random(0)
    vocabulary = ["a", "b", "c", "d", "e", "f"]
    for _ in range(2000):
        q = [rng.choice(vocabulary) for _ in range(rng.randint(1, 12))]
        a = [rng.choice(vocabulary) for _ in range(rng.randint(1, 30))]
        threshold = rng.choice([0.5, 0.8, 0.9])
        exact = SequenceMatcher(None, q, a, autojunk=False).ratio()
        bounded = checks.restatement(q, a, at_least=threshold)
        assert (bounded >= threshold) == (exact >= threshold)
        if exact >= threshold:
            assert bounded == exact


# Decontamination -----------------------------------------------------------------------
EVAL_LONG = (
    "A train leaves the station at nine in the morning travelling at sixty miles per hour towards "
    "a city that is three hundred miles away"
)  # 25 words
EVAL_MID = "Find all real solutions of the equation x squared minus five x plus six"  # 14 words
EVAL_MEDIUM = "Compute the determinant of the matrix with rows one two and three four"  # 13 words
EVAL_SHORT = "Name the largest planet in the solar system"  # 8 words: short (< 13)
EVAL_TINY = "What is the capital of France"  # 6 words: tiny (< 8)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def eval_files(tmp_path):
    first = write_jsonl(
        tmp_path / "first.jsonl",
        [
            {"question": EVAL_LONG, "answer": "5 hours"},
            {"question": EVAL_TINY, "answer": "Paris"},
            {"question": EVAL_SHORT, "answer": "Jupiter"},
        ],
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    second = tmp_path / "second.parquet"
    pq.write_table(pa.table({"problem": [EVAL_MID, EVAL_MEDIUM], "solution": ["2, 3", "-2"]}), second)
    return first, second


DECON_ROWS = [
    # 13 consecutive words of EVAL_LONG inside a longer question: contaminated by first
    row(
        0,
        "Consider this: a train leaves the station at nine in the morning travelling at sixty miles per hour. "
        "How far has it gone by noon?",
    ),
    # 12 consecutive words only: kept
    row(1, "Suppose a train leaves the station at nine in the morning travelling at great speed."),
    # tiny eval question contained whole: contaminated by first
    row(2, "Tell me: what is the capital of France?"),
    # tiny eval question only in part: kept
    row(3, "Name the capital city of France and describe its history."),
    # a long question with an 8-word run of the short eval question: contaminated by first
    row(
        4,
        "For our astronomy unit, name the largest planet in the solar system and give two facts about its "
        "moons and rings.",
    ),
    # a short question (9 words) sharing 8 words with the mid-length eval question: contaminated by second
    row(5, "Please find all real solutions of the equation x squared."),
    # an unrelated long question: kept
    row(6, "Prove that every finite integral domain is a field, and give an example of an infinite one."),
    # punctuation and case do not hide an overlap: contaminated by second
    row(7, "COMPUTE the determinant of the matrix, with rows (one, two) and (three, four)!"),
]


def test_decontamination_marks_overlaps_and_reports_per_eval_set(eval_files):
    first, second = eval_files
    sets = [load_eval_set(first, "first.jsonl"), load_eval_set(second, "second.parquet")]
    assert sets[0].column == "question" and sets[1].column == "problem"
    kept, dropped, report = run_filters(DECON_ROWS, only(), eval_sets=sets)
    assert [r["question_index"] for r in kept] == [1, 3, 6]
    assert dropped_by(dropped) == {
        0: "contaminated",
        2: "contaminated",
        4: "contaminated",
        5: "contaminated",
        7: "contaminated",
    }
    assert report.counts == {"contaminated": 5}
    assert report.per_eval_set == {"first.jsonl": 3, "second.parquet": 2}
    details = {r["question_index"]: r["filter_detail"] for r in dropped}
    assert details[0].startswith("overlaps first.jsonl question 1 (13 words shared: 'a train leaves")
    assert details[2] == "overlaps first.jsonl question 2 (6 words shared: 'what is the capital of france')"
    assert details[4].startswith("overlaps first.jsonl question 3 (8 words shared")
    assert details[5].startswith("overlaps second.parquet question 1 (8 words shared")
    assert details[7].startswith("overlaps second.parquet question 2 (")


def test_decontamination_ngram_sizes_are_settings(eval_files):
    first, _ = eval_files
    sets = [load_eval_set(first)]
    # With 20-grams and 15-grams, the 16-word run of row 0 is too short; the 8-word eval question
    # is now "tiny" (< 15 words), and found whole in row 4, as the 6-word one is in row 2.
    config = only(decontaminate_ngram=20, decontaminate_short_ngram=15)
    _, dropped, _ = run_filters(DECON_ROWS, config, eval_sets=sets)
    assert dropped_by(dropped) == {2: "contaminated", 4: "contaminated"}
    # With 12-grams, row 1's 12-word run is caught too.
    _, dropped, _ = run_filters(DECON_ROWS, only(decontaminate_ngram=12), eval_sets=sets)
    assert set(dropped_by(dropped)) == {0, 1, 2, 4}


def test_decontamination_reads_paths_from_the_settings(eval_files, tmp_path):
    config = only(decontaminate=["first.jsonl"])
    _, dropped, report = run_filters(DECON_ROWS, config, base=tmp_path)
    assert report.per_eval_set == {"first.jsonl": 3}
    assert set(dropped_by(dropped)) == {0, 2, 4}


def test_eval_sets_in_every_format_and_column(tmp_path):
    from datasets import Dataset, DatasetDict

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": EVAL_TINY}]
    DatasetDict({"test": Dataset.from_list([{"prompt": messages, "id": 1}])}).save_to_disk(str(tmp_path / "dd"))
    Dataset.from_list([{"input": EVAL_SHORT}]).save_to_disk(str(tmp_path / "ds"))
    write_jsonl(tmp_path / "p.jsonl", [{"problem": EVAL_MID}])
    (tmp_path / "arr.json").write_text(json.dumps([{"question": EVAL_LONG}]))
    loaded = {p: load_eval_set(tmp_path / p) for p in ("dd", "ds", "p.jsonl", "arr.json")}
    assert {p: (s.column, s.questions) for p, s in loaded.items()} == {
        "dd": ("prompt", [EVAL_TINY]),
        "ds": ("input", [EVAL_SHORT]),
        "p.jsonl": ("problem", [EVAL_MID]),
        "arr.json": ("question", [EVAL_LONG]),
    }


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.jsonl", None, "evaluation set not found"),
        (
            "cols.jsonl",
            '{"text": "a", "label": 1}\n',
            "no question column (looked for question, prompt, input, problem); its columns: text, label",
        ),
        ("bad.jsonl", '{"question": "a"}\nnot json\n', "not a JSON line"),
        ("empty.jsonl", '{"question": ""}\n', "has no questions"),
        ("evals.csv", "question\nwhat\n", "unsupported evaluation set format '.csv'"),
        ("folder", "", "not a dataset saved with datasets' save_to_disk"),
        ("broken.parquet", "not parquet", "cannot read as Parquet"),
    ],
)
def test_bad_eval_sets_are_user_errors_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as info:
        load_eval_set(path)
    assert message in str(info.value) and name in str(info.value)
    if name == "bad.jsonl":
        assert f"{name}:2" in str(info.value)


def test_ngram_index_rules():
    index = decontaminate.NgramIndex.build([EVAL_TINY, EVAL_SHORT, EVAL_LONG], ngram=13, short=8)
    words = decontaminate.words
    assert index.match(words(EVAL_TINY)) is not None
    assert index.match(words("capital of France")) is None  # a tiny generated question inside an eval one
    assert index.match(words("")) is None


# All filters together ------------------------------------------------------------------
def test_a_row_is_dropped_once_by_the_first_filter_and_provenance_survives(eval_files):
    first, _ = eval_files
    rows = [
        row(0, MATRIX),
        row(1, MATRIX, finish="length"),  # truncated and an exact duplicate: truncated (checks run first)
        row(2, MATRIX.lower()),  # exact duplicate of 0
        row(3, MATRIX + " Explain each step."),  # near duplicate of 0
        row(4, DECON_ROWS[0]["prompt"][0]["content"]),  # contaminated
        row(5, DECON_ROWS[0]["prompt"][0]["content"]),  # contaminated too, not an exact duplicate of a dropped row
        row(6, "What is a field?", "What is a field?"),
        row(7, "Describe the causes of the French Revolution."),
    ]
    kept, dropped, report = run_filters(rows, FiltersConfig(), eval_sets=[load_eval_set(first, "first")])
    assert [r["question_index"] for r in kept] == [0, 7]
    assert dropped_by(dropped) == {
        1: "truncated",
        2: "exact_duplicate",
        3: "near_duplicate_minhash",
        4: "contaminated",
        5: "contaminated",
        6: "restated_question",
    }
    assert report.counts == {
        "empty_answer": 0,
        "restated_question": 1,
        "truncated": 1,
        "contaminated": 2,
        "exact_duplicate": 1,
        "near_duplicate_minhash": 1,
    }
    assert report.rows_in == 8 and report.kept == 2 and report.dropped == 6
    assert set(report.seconds) == {"checks", "decontaminate", "exact", "minhash"}
    for out in kept + dropped:
        source = rows[out["question_index"]]
        assert {k: out[k] for k in source} == source  # every field as it was
    assert all(r["filtered_by"] == "" and "filter_detail" not in r for r in kept)
    assert all(r["filtered_by"] and r["filter_detail"] for r in dropped)
    assert "filtered_by" not in rows[0]  # the input rows are not changed


def test_no_rows_and_no_filters():
    kept, dropped, report = run_filters([], FiltersConfig())
    assert kept == [] and dropped == [] and report.dropped == 0
    kept, dropped, report = run_filters(EXACT_ROWS, only())
    assert len(kept) == len(EXACT_ROWS) and report.counts == {}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"minhash": {"threshold": 1.5}}, "minhash.threshold"),
        ({"minhash": {"threshold": 0}}, "minhash.threshold"),
        ({"embedding": {"threshold": 1.01}}, "embedding.threshold"),
        ({"checks": {"restate_similarity": -0.1}}, "restate_similarity"),
        ({"exact": "yes"}, "exact"),
        ({"decontaminate_ngram": 1}, "decontaminate_ngram"),
        ({"decontaminate_ngram": 8, "decontaminate_short_ngram": 10}, "decontaminate_short_ngram must be <="),
        ({"minhash": {"treshold": 0.5}}, "treshold"),
    ],
)
def test_filter_settings_are_validated(settings, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        FiltersConfig.model_validate(settings)
    assert message in str(info.value)


def test_decontaminate_accepts_one_path_or_a_list():
    assert FiltersConfig.model_validate({"decontaminate": "a.jsonl"}).decontaminate == ["a.jsonl"]
    assert FiltersConfig.model_validate({"decontaminate": None}).decontaminate == []
