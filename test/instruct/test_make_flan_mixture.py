"""Tests of examples/instruct/make_flan_mixture.py.

Every answer (and every few-shot exemplar's) is recomputed here from the
record's visible text by solvers written independently of the generator.
"""

import collections
import json
import pathlib
import re
import string
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "examples" / "instruct" / "make_flan_mixture.py"

SPLITS = ("train", "valid", "held_out")
FIELDS = ("instruction", "input", "output", "task", "template", "cluster",
          "shots")


def generate(out, *args):
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), *args],
                   check=True, capture_output=True, text=True)
    return {split: [json.loads(line) for line in
                    (out / f"{split}.jsonl").read_text().splitlines()]
            for split in SPLITS}


SMALL = ("--train-per-task", "90", "--valid-per-task", "12",
         "--held-out-per-task", "30")


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("mix"), "--seed", "3", *SMALL)


# ------------------------------------------------------------------ solvers

QUESTION_WORDS = {"is", "can", "does", "did", "will"}
GOOD = {"great", "good", "lovely", "fun", "tasty", "nice", "superb",
        "amazing", "excellent", "cozy"}
BAD = {"bad", "awful", "boring", "dull", "terrible", "poor", "bland", "rude",
       "dirty", "slow"}
SHIFTED = string.ascii_lowercase[3:] + string.ascii_lowercase[:3]
ENCODE = str.maketrans(string.ascii_lowercase, SHIFTED)
DECODE = str.maketrans(SHIFTED, string.ascii_lowercase)


def match(pattern, text):
    m = re.fullmatch(pattern, text)
    assert m, f"{text!r} does not match {pattern!r}"
    return m.groups()


def arithmetic(a, op, b):
    return int(a) + int(b) if op == "+" else int(a) - int(b)


def missing_operand(a, op, c):
    # a + x = c  =>  x = c - a;  a - x = c  =>  x = a - c
    return int(c) - int(a) if op == "+" else int(a) - int(c)


def sort_key(items):
    return [int(i) for i in items] if all(i.isdigit() for i in items) else items


def sorted_items(text):
    items = text.split()
    return [str(i) for i in sorted(sort_key(items))]


def polarity(review):
    words = review.split()
    adjective = words[-1]
    assert adjective in GOOD | BAD, review
    return (adjective in GOOD) != ("not" in words)


SOLVERS = {
    ("arithmetic", "question"): lambda q: str(arithmetic(
        *match(r"What is (\d+) ([+-]) (\d+)\?", q))),
    ("arithmetic", "calculate"): lambda q: str(arithmetic(
        *match(r"(\d+) ([+-]) (\d+)", q))),
    ("arithmetic", "missing_operand"): lambda q: str(missing_operand(
        *match(r"(\d+) ([+-]) x = (\d+)", q))),
    ("comparison", "larger"): lambda q: str(max(map(int, match(
        r"Which is larger, (\d+) or (\d+)\?", q)))),
    ("comparison", "smaller"): lambda q: str(min(map(int, match(
        r"Which is smaller, (\d+) or (\d+)\?", q)))),
    ("comparison", "greater_options"): lambda q: (lambda a, b: "yes" if a > b
                                                  else "no")(*map(int, match(
                                                      r"Is (\d+) greater than "
                                                      r"(\d+)\?", q))),
    ("casing", "fix_case"): lambda q: q.capitalize(),
    ("casing", "upper"): str.upper,
    ("casing", "lower"): str.lower,
    ("punctuation", "end_mark"): lambda q: q + (
        "?" if q.split()[0].lower() in QUESTION_WORDS else "."),
    ("punctuation", "strip"): lambda q: q[:-1] if q[-1] in ".?" else None,
    ("punctuation", "commas"): lambda q: ", ".join(q.split()),
    ("spacing", "fix_spaces"): lambda q: " ".join(q.split()),
    ("spacing", "remove_spaces"): lambda q: q.replace(" ", ""),
    ("spacing", "spread_letters"): " ".join,
    ("sorting", "ascending"): lambda q: " ".join(sorted_items(q)),
    ("sorting", "descending"): lambda q: " ".join(sorted_items(q)[::-1]),
    ("sorting", "smallest"): lambda q: sorted_items(" ".join(match(
        r"Which comes first when sorted: (.*)\?", q)[0].split(", ")))[0],
    ("reversal", "reverse_word"): lambda q: q[::-1],
    ("reversal", "unreverse_word"): lambda q: q[::-1],
    ("reversal", "reverse_words"): lambda q: " ".join(q.split()[::-1]),
    ("counting", "letters"): lambda q: str(len(match(
        r'How many letters are in "([a-z]+)"\?', q)[0])),
    ("counting", "words"): lambda q: str(len(q.split())),
    ("counting", "occurrences"): lambda q: (lambda c, w: str(w.count(c)))(
        *match(r'How many times does "([a-z])" occur in "([a-z]+)"\?', q)),
    ("sentiment", "review"): lambda q: "positive" if polarity(q)
    else "negative",
    ("sentiment", "liked"): lambda q: "yes" if polarity(q) else "no",
    ("sentiment", "mood"): lambda q: "happy" if polarity(q) else "unhappy",
    ("cipher", "to_shiftish"): lambda q: q.translate(ENCODE),
    ("cipher", "from_shiftish"): lambda q: q.translate(DECODE),
    ("cipher", "shiftish_question"): lambda q: match(
        r'What is "([a-z ]+)" in Shiftish\?', q)[0].translate(ENCODE),
    ("copying", "repeat"): lambda q: q,
    ("copying", "first_letters"): lambda q: "".join(w[0] for w in q.split()),
    ("copying", "last_word"): lambda q: q.split()[-1],
}

OPTIONS = {("comparison", "greater_options"): ["yes", "no"],
           ("sentiment", "review"): ["positive", "negative"],
           ("sentiment", "liked"): ["yes", "no"],
           ("sentiment", "mood"): ["happy", "unhappy"]}


def split_record(record):
    """(exemplar lines, query, options) as a reader of the text sees them."""
    text = record["input"]
    options = None
    if "OPTIONS:" in text.split("\n"):
        text, _, block = text.partition("OPTIONS:\n")
        text = text[:-1] if text.endswith("\n") else text
        options = [line[2:] for line in block.split("\n")]
        assert all(line.startswith("- ") for line in block.split("\n"))
    lines = (text or record["instruction"]).split("\n")
    if text:
        assert "\n" not in record["instruction"]
    return lines[:-1], lines[-1], options


# -------------------------------------------------------------------- tests


def test_answers_and_exemplars_are_correct(mixture):
    checked = collections.Counter()
    for split in SPLITS:
        for record in mixture[split]:
            key = (record["task"], record["template"])
            solve = SOLVERS[key]
            exemplars, query, options = split_record(record)
            assert solve(query) == record["output"], record
            assert options == OPTIONS.get(key), record
            if options:
                assert record["output"] in options
            assert len(exemplars) == record["shots"], record
            for line in exemplars:
                x, y = line.rsplit(" -> ", 1)
                assert solve(x) == y, (line, record)
            checked[key] += 1
    # Every template of every task was exercised.
    assert set(checked) == set(SOLVERS)


def test_records_are_well_formed_and_short(mixture):
    for split in SPLITS:
        for record in mixture[split]:
            assert list(record) == list(FIELDS)
            assert all(isinstance(record[f], str) for f in FIELDS[:6])
            text = record["instruction"] + record["input"] + record["output"]
            assert text.isascii() and "\0" not in text
            assert len(text.encode()) <= 96
            assert record["instruction"] and record["output"]


def test_few_shot_and_inverted_forms_are_present(mixture):
    train = mixture["train"]
    assert sum(r["shots"] > 0 for r in train) > len(train) // 10
    assert max(r["shots"] for r in train) == 3
    for name in ("missing_operand", "lower", "strip", "from_shiftish"):
        assert any(r["template"] == name for s in SPLITS for r in mixture[s])


def test_tasks_and_templates_are_balanced(mixture):
    tasks = collections.Counter(r["task"] for r in mixture["train"])
    assert len(tasks) == 10 and set(tasks.values()) == {90}
    assert set(collections.Counter(
        r["task"] for r in mixture["valid"]).values()) == {12}
    templates = collections.Counter((r["task"], r["template"])
                                    for r in mixture["train"])
    assert set(templates.values()) == {30}


def test_held_out_cluster_never_appears_in_training(mixture):
    held_out = mixture["held_out"]
    assert {r["cluster"] for r in held_out} == {"translation"}
    assert len(held_out) == 30
    for split in ("train", "valid"):
        for record in mixture[split]:
            assert record["cluster"] != "translation"
            assert record["task"] != "cipher"
            assert "Shiftish" not in record["instruction"] + record["input"]


def test_other_clusters_can_be_held_out(tmp_path):
    mix = generate(tmp_path, "--held-out", "comparison,sentiment", *SMALL)
    assert {r["cluster"] for r in mix["held_out"]} == {"comparison",
                                                         "sentiment"}
    train_clusters = {r["cluster"] for r in mix["train"]}
    assert "comparison" not in train_clusters
    assert "sentiment" not in train_clusters
    assert "translation" in train_clusters
    assert not any("OPTIONS" in r["input"] for r in mix["train"])


def test_valid_prompts_are_not_in_train(mixture):
    seen = {(r["instruction"], r["input"]) for r in mixture["train"]}
    assert not any((r["instruction"], r["input"]) in seen
                   for r in mixture["valid"])


def test_generation_is_deterministic(tmp_path):
    generate(tmp_path / "a", "--seed", "11", *SMALL)
    generate(tmp_path / "b", "--seed", "11", *SMALL)
    generate(tmp_path / "c", "--seed", "12", *SMALL)
    for name in ("train.jsonl", "valid.jsonl", "held_out.jsonl", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == \
            (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != \
        (tmp_path / "c" / "train.jsonl").read_bytes()


def test_max_bytes_is_respected(tmp_path):
    mix = generate(tmp_path, "--max-bytes", "128", *SMALL)
    sizes = [len((r["instruction"] + r["input"] + r["output"]).encode())
             for split in SPLITS for r in mix[split]]
    assert 96 < max(sizes) <= 128


def test_too_small_max_bytes_names_the_template(tmp_path):
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path),
         "--max-bytes", "64"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "cannot make a train record of" in result.stderr
    assert "within 64 bytes" in result.stderr


def test_summary_lists_tasks_and_counts(tmp_path):
    generate(tmp_path, *SMALL)
    readme = (tmp_path / "README.md").read_text()
    assert "| cipher | translation |" in readme
    assert "| arithmetic | arithmetic | question, calculate, " \
        "missing_operand* | 90 | 12 | 0 |" in readme
    assert "| total | | | 900 | 120 | 30 |" in readme


@pytest.mark.parametrize("args, message", [
    (("--held-out", "poetry"), "unknown cluster poetry"),
    (("--max-bytes", "10"), "--max-bytes must be at least 32"),
])
def test_bad_arguments_are_reported(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path), *args],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr
