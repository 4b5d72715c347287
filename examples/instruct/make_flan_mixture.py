#!/usr/bin/env python3
"""Generates a small FLAN-style instruction-tuning mixture for byte-level models.

Eleven toy tasks in eight clusters, each with several templates (some
"inverted": input and output swap roles, FLAN's trick for more variety),
in zero-shot and few-shot form (exemplars "x -> y", one a line, before the
query). Whole clusters are held out (default: the cipher "translation"
cluster): they never appear in train.jsonl or valid.jsonl, only in
held_out.jsonl, to measure generalisation to unseen tasks.

Writes into --out:
  train.jsonl     held-in tasks
  valid.jsonl     held-in tasks, prompts not in train.jsonl
  held_out.jsonl  held-out clusters only
  README.md       the tasks, templates and counts

Each line: {"instruction", "input", "output", "task", "template", "cluster",
"shots"}. instruction + input + output is at most --max-bytes bytes (ASCII).
Deterministic: the same arguments give byte-identical files. Python 3,
standard library only. See docs/data.md.
"""

import argparse
import json
import os
import random
import string
import sys

# ----------------------------------------------------------------- lexicons

SUBJECTS = ["the cat", "a dog", "my friend", "the bird", "her brother",
            "the teacher", "a farmer", "our team", "the baby", "his aunt",
            "the pilot", "a child", "the cook", "my sister", "the king"]
VERBS = ["sees", "likes", "finds", "eats", "paints", "reads", "wants",
         "holds", "hears", "keeps", "makes", "loves", "brings", "sells"]
OBJECTS = ["the ball", "a cake", "an apple", "the map", "a book",
           "the lamp", "a song", "the boat", "a hat", "the key", "a box",
           "the tree", "a fish", "the door"]
AUXILIARIES = ["is", "can", "does", "did", "will"]
ADJECTIVES = ["big", "red", "old", "fast", "new", "small", "happy", "cold"]
COLOURS = ["red", "blue", "green", "black", "white", "pink", "gray",
           "brown", "gold", "tan"]

REVIEW_TOPICS = ["the food", "the movie", "the hotel", "the staff",
                 "the book", "the game", "the show", "the room", "the cafe"]
POSITIVE = ["great", "good", "lovely", "fun", "tasty", "nice", "superb",
            "amazing", "excellent", "cozy"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "poor", "bland",
            "rude", "dirty", "slow"]
INTENSIFIERS = ["", "very ", "really ", "so ", "quite "]

CIPHER_SHIFT = 3  # The toy language "Shiftish": a Caesar shift of 3.

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def pseudo_word(rng, low=1, high=3):
    """A pronounceable made-up word: a large space of distinct inputs."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(low, high)))


def sentence(rng):
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"


def sentence_case(text):
    return text[:1].upper() + text[1:]


def shift(text, amount):
    return "".join(
        chr((ord(c) - ord("a") + amount) % 26 + ord("a")) if c.islower() else c
        for c in text)


# -------------------------------------------------------------------- tasks
#
# A task samples a payload (a dict) and has templates. A template renders a
# payload into (instruction, input, output): the instruction is fixed text
# when the input is not empty (few-shot exemplars go into the input), and
# holds the whole query when the input is empty. OPTIONS are appended to the
# input, FLAN style.


class Template:
    def __init__(self, name, render, options=None, inverted=False):
        self.name = name
        self.render = render
        self.options = options
        self.inverted = inverted


class Task:
    def __init__(self, name, cluster, sample, templates):
        self.name = name
        self.cluster = cluster
        self.sample = sample
        self.templates = templates


def sample_arithmetic(rng):
    a, b = rng.randint(0, 50), rng.randint(0, 50)
    if rng.random() < 0.5:
        return {"a": a, "b": b, "op": "+", "result": a + b}
    a, b = max(a, b), min(a, b)
    return {"a": a, "b": b, "op": "-", "result": a - b}


def sample_comparison(rng):
    a, b = rng.sample(range(100), 2)
    return {"a": a, "b": b}


def sample_casing(rng):
    text = sentence(rng)
    garbled = "".join(c.upper() if rng.random() < 0.5 else c for c in text)
    return {"text": text, "garbled": garbled}


def sample_punctuation(rng):
    if rng.random() < 0.5:
        text = (f"{rng.choice(AUXILIARIES)} {rng.choice(SUBJECTS)} "
                f"{rng.choice(ADJECTIVES)}")
        mark = "?"
    else:
        text, mark = sentence(rng), "."
    colours = rng.sample(COLOURS, rng.randint(3, 4))
    return {"text": sentence_case(text), "mark": mark, "colours": colours}


def sample_spacing(rng):
    words = sentence(rng).split()
    gaps = [" " * rng.randint(1, 3) for _ in words[1:]]
    if all(g == " " for g in gaps):
        gaps[rng.randrange(len(gaps))] = "  "
    spaced = words[0] + "".join(g + w for g, w in zip(gaps, words[1:]))
    return {"words": words, "spaced": spaced, "word": pseudo_word(rng, 1, 2)}


def sample_sorting(rng):
    if rng.random() < 0.5:
        items = rng.sample(string.ascii_lowercase, rng.randint(3, 6))
        return {"kind": "letters", "items": items,
                "sorted": sorted(items)}
    items = rng.sample(range(100), rng.randint(3, 5))
    return {"kind": "numbers", "items": [str(i) for i in items],
            "sorted": [str(i) for i in sorted(items)]}


def sample_reversal(rng):
    return {"word": pseudo_word(rng, 2, 3), "words": sentence(rng).split()}


def sample_counting(rng):
    word = pseudo_word(rng, 1, 4)
    return {"word": word, "letter": rng.choice(word),
            "words": " ".join(pseudo_word(rng, 1, 2)
                              for _ in range(rng.randint(2, 7)))}


def sample_sentiment(rng):
    positive = rng.random() < 0.5
    negated = rng.random() < 0.3
    adjective = rng.choice(NEGATIVE if positive == negated else POSITIVE)
    review = (f"{rng.choice(REVIEW_TOPICS)} was {'not ' if negated else ''}"
              f"{rng.choice(INTENSIFIERS) if not negated else ''}{adjective}")
    return {"review": review, "positive": positive}


def sample_cipher(rng):
    plain = " ".join(pseudo_word(rng, 1, 2)
                     for _ in range(rng.randint(1, 2)))
    return {"plain": plain, "coded": shift(plain, CIPHER_SHIFT)}


def sample_copying(rng):
    return {"words": [pseudo_word(rng, 1, 2) for _ in range(rng.randint(2, 5))]}


def arithmetic_question(p):
    return f"What is {p['a']} {p['op']} {p['b']}?", "", str(p["result"])


def number_words(p):
    return " ".join(p["items"])


TASKS = [
    Task("arithmetic", "arithmetic", sample_arithmetic, [
        Template("question", arithmetic_question),
        Template("calculate", lambda p: (
            "Calculate.", f"{p['a']} {p['op']} {p['b']}", str(p["result"]))),
        # Inverted: the result is given, an operand is asked for.
        Template("missing_operand", lambda p: (
            "Find x.", f"{p['a']} {p['op']} x = {p['result']}", str(p["b"])),
            inverted=True),
    ]),
    Task("comparison", "comparison", sample_comparison, [
        Template("larger", lambda p: (
            f"Which is larger, {p['a']} or {p['b']}?", "",
            str(max(p["a"], p["b"])))),
        Template("smaller", lambda p: (
            f"Which is smaller, {p['a']} or {p['b']}?", "",
            str(min(p["a"], p["b"]))), inverted=True),
        Template("greater_options", lambda p: (
            f"Is {p['a']} greater than {p['b']}?", "",
            "yes" if p["a"] > p["b"] else "no"), options=["yes", "no"]),
    ]),
    Task("casing", "text_repair", sample_casing, [
        Template("fix_case", lambda p: (
            "Fix the capitalization.", p["garbled"], sentence_case(p["text"]))),
        Template("upper", lambda p: (
            "Write it in capital letters.", sentence_case(p["text"]),
            p["text"].upper())),
        Template("lower", lambda p: (
            "Write it in small letters.", p["text"].upper(), p["text"]),
            inverted=True),
    ]),
    Task("punctuation", "text_repair", sample_punctuation, [
        Template("end_mark", lambda p: (
            "Add the missing punctuation.", p["text"], p["text"] + p["mark"])),
        Template("strip", lambda p: (
            "Remove the punctuation.", p["text"] + p["mark"], p["text"]),
            inverted=True),
        Template("commas", lambda p: (
            "Add commas between the words.", " ".join(p["colours"]),
            ", ".join(p["colours"]))),
    ]),
    Task("spacing", "text_repair", sample_spacing, [
        Template("fix_spaces", lambda p: (
            "Fix the spacing.", p["spaced"], " ".join(p["words"]))),
        Template("remove_spaces", lambda p: (
            "Remove the spaces.", " ".join(p["words"]), "".join(p["words"])),
            inverted=True),
        Template("spread_letters", lambda p: (
            "Put a space between the letters.", p["word"],
            " ".join(p["word"]))),
    ]),
    Task("sorting", "sequence", sample_sorting, [
        Template("ascending", lambda p: (
            f"Sort the {p['kind']}.", number_words(p), " ".join(p["sorted"]))),
        Template("descending", lambda p: (
            f"Sort the {p['kind']} in reverse order.", number_words(p),
            " ".join(reversed(p["sorted"]))), inverted=True),
        Template("smallest", lambda p: (
            f"Which comes first when sorted: {', '.join(p['items'])}?", "",
            p["sorted"][0])),
    ]),
    Task("reversal", "sequence", sample_reversal, [
        Template("reverse_word", lambda p: (
            "Spell the word backwards.", p["word"], p["word"][::-1])),
        Template("unreverse_word", lambda p: (
            "This word is spelled backwards. Spell it forwards.",
            p["word"][::-1], p["word"]), inverted=True),
        Template("reverse_words", lambda p: (
            "Reverse the order of the words.", " ".join(p["words"]),
            " ".join(reversed(p["words"])))),
    ]),
    Task("counting", "counting", sample_counting, [
        Template("letters", lambda p: (
            f'How many letters are in "{p["word"]}"?', "",
            str(len(p["word"])))),
        Template("words", lambda p: (
            "How many words are there?", p["words"],
            str(len(p["words"].split())))),
        Template("occurrences", lambda p: (
            f'How many times does "{p["letter"]}" occur in "{p["word"]}"?',
            "", str(p["word"].count(p["letter"])))),
    ]),
    Task("sentiment", "sentiment", sample_sentiment, [
        Template("review", lambda p: (
            "Is this review positive or negative?", p["review"],
            "positive" if p["positive"] else "negative"),
            options=["positive", "negative"]),
        Template("liked", lambda p: (
            "Did the writer like it?", p["review"],
            "yes" if p["positive"] else "no"), options=["yes", "no"]),
        Template("mood", lambda p: (
            "How does the writer feel?", p["review"],
            "happy" if p["positive"] else "unhappy"),
            options=["happy", "unhappy"]),
    ]),
    Task("cipher", "translation", sample_cipher, [
        Template("to_shiftish", lambda p: (
            "Translate into Shiftish.", p["plain"], p["coded"])),
        Template("from_shiftish", lambda p: (
            "Translate from Shiftish.", p["coded"], p["plain"]),
            inverted=True),
        Template("shiftish_question", lambda p: (
            f'What is "{p["plain"]}" in Shiftish?', "", p["coded"])),
    ]),
    Task("copying", "copying", sample_copying, [
        Template("repeat", lambda p: (
            "Repeat the text.", " ".join(p["words"]), " ".join(p["words"]))),
        Template("first_letters", lambda p: (
            "Write the first letter of each word.", " ".join(p["words"]),
            "".join(w[0] for w in p["words"]))),
        Template("last_word", lambda p: (
            "What is the last word?", " ".join(p["words"]), p["words"][-1])),
    ]),
]

CLUSTERS = sorted({task.cluster for task in TASKS})

# -------------------------------------------------------------- formatting


def options_block(options):
    return "OPTIONS:\n" + "\n".join(f"- {o}" for o in options)


def compose(template, query, exemplars):
    """The record text for `query` (instruction, input, output) after
    `exemplars` (the same template's rendered payloads)."""
    instruction, inp, output = query
    if inp:
        inp = "\n".join([f"{e[1]} -> {e[2]}" for e in exemplars] + [inp])
    else:
        instruction = "\n".join(
            [f"{e[0]} -> {e[2]}" for e in exemplars] + [instruction])
    if template.options:
        inp = (inp + "\n" if inp else "") + options_block(template.options)
    return instruction, inp, output


def size(record):
    return sum(len(record[k].encode()) for k in ("instruction", "input",
                                                  "output"))


def make_record(task, template, rng, args):
    """One record of `task` in `template`, zero-shot or few-shot, within
    --max-bytes; None if the sampled query is too long."""
    query = template.render(task.sample(rng))
    shots = 0
    if rng.random() < args.few_shot_fraction:
        shots = rng.randint(1, args.max_shots)
    exemplars = []
    while True:
        instruction, inp, output = compose(template, query, exemplars)
        record = {"instruction": instruction, "input": inp, "output": output,
                  "task": task.name, "template": template.name,
                  "cluster": task.cluster, "shots": len(exemplars)}
        if size(record) > args.max_bytes:
            if not exemplars:
                return None
            exemplars.pop()
            instruction, inp, output = compose(template, query, exemplars)
            record.update(instruction=instruction, input=inp,
                          shots=len(exemplars))
            return record
        if len(exemplars) == shots:
            return record
        exemplar = template.render(task.sample(rng))
        if exemplar == query:
            continue  # The answer must not be given away.
        if query[1] and exemplar[0] != query[0]:
            continue  # Exemplars in the input share the query's instruction.
        exemplars.append(exemplar)


def generate_split(split, tasks, count, args, exclude=frozenset()):
    """`count` records per task, templates in turn; prompts in `exclude`
    are resampled."""
    records = []
    for task in tasks:
        rng = random.Random(f"{args.seed}/{split}/{task.name}")
        for i in range(count):
            template = task.templates[i % len(task.templates)]
            for _ in range(10000):
                record = make_record(task, template, rng, args)
                if record and (record["instruction"],
                               record["input"]) not in exclude:
                    break
            else:
                sys.exit(f"make_flan_mixture: cannot make a {split} record "
                         f"of {task.name}/{template.name} within "
                         f"{args.max_bytes} bytes")
            records.append(record)
    random.Random(f"{args.seed}/{split}/order").shuffle(records)
    return records


def write_jsonl(path, records):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def summary(args, held_in, held_out, splits):
    lines = [
        "# FLAN-style toy mixture",
        "",
        "Generated by `examples/instruct/make_flan_mixture.py "
        f"--seed {args.seed} --max-bytes {args.max_bytes}` "
        "(see docs/data.md).",
        "",
        f"Held-out clusters (only in held_out.jsonl): "
        f"{', '.join(args.held_out)}.",
        f"Few-shot records (1 to {args.max_shots} exemplars asked for "
        f"{args.few_shot_fraction:.0%} of records, as many as fit): "
        + ", ".join(f"{sum(r['shots'] > 0 for r in records)} in {name}"
                    for name, records in splits.items()) + ".",
        "",
        "| task | cluster | templates (* inverted) | train | valid | "
        "held_out |",
        "|------|---------|------------------------|-------|-------|"
        "----------|",
    ]
    for task in held_in + held_out:
        counts = [sum(r["task"] == task.name for r in splits[s])
                  for s in ("train", "valid", "held_out")]
        names = ", ".join(t.name + ("*" if t.inverted else "")
                          for t in task.templates)
        lines.append(f"| {task.name} | {task.cluster} | {names} | "
                     + " | ".join(map(str, counts)) + " |")
    lines.append("| total | | | " + " | ".join(
        str(len(splits[s])) for s in ("train", "valid", "held_out")) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-task", type=int, default=600)
    parser.add_argument("--valid-per-task", type=int, default=30)
    parser.add_argument("--held-out-per-task", type=int, default=150)
    parser.add_argument("--max-bytes", type=int, default=96,
                        help="most bytes of instruction + input + output")
    parser.add_argument("--few-shot-fraction", type=float, default=0.25)
    parser.add_argument("--max-shots", type=int, default=3)
    parser.add_argument("--held-out", default="translation",
                        help="comma-separated clusters to hold out, of: "
                        + ", ".join(CLUSTERS))
    args = parser.parse_args(argv)
    args.held_out = [c for c in args.held_out.split(",") if c]
    unknown = [c for c in args.held_out if c not in CLUSTERS]
    if unknown:
        parser.error(f"unknown cluster {', '.join(unknown)}; clusters: "
                     + ", ".join(CLUSTERS))
    if len(set(args.held_out)) == len(CLUSTERS):
        parser.error("--held-out leaves no cluster to train on")
    if args.max_bytes < 32:
        parser.error("--max-bytes must be at least 32")
    if not 0 <= args.few_shot_fraction <= 1 or args.max_shots < 1:
        parser.error("--few-shot-fraction must be in [0, 1] and "
                     "--max-shots at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    held_in = [t for t in TASKS if t.cluster not in args.held_out]
    held_out = [t for t in TASKS if t.cluster in args.held_out]
    splits = {}
    splits["train"] = generate_split("train", held_in, args.train_per_task,
                                     args)
    seen = frozenset((r["instruction"], r["input"]) for r in splits["train"])
    splits["valid"] = generate_split("valid", held_in, args.valid_per_task,
                                     args, exclude=seen)
    splits["held_out"] = generate_split("held_out", held_out,
                                        args.held_out_per_task, args)
    os.makedirs(args.out, exist_ok=True)
    for name, records in splits.items():
        write_jsonl(os.path.join(args.out, name + ".jsonl"), records)
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(summary(args, held_in, held_out, splits))
    print(f"make_flan_mixture: {len(splits['train'])} train, "
          f"{len(splits['valid'])} valid, {len(splits['held_out'])} held-out "
          f"records in {args.out}")


if __name__ == "__main__":
    main()
