"""Retrieval evaluation on hand-checkable cases, metric names, the retrieval task, and prompts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset

from embedft.config.schema import EvaluationConfig, RunConfig
from embedft.evaluation.evaluators import build_evaluator, evaluate
from embedft.evaluation.metrics import standard_metrics
from embedft.evaluation.retrieval import RetrievalTask, bounded_retrieval_task, build_retrieval_task
from embedft.evaluation.sets import evaluation_set, evaluator_for
from embedft.models.loading import load_model
from embedft.models.prompts import training_prompts
from tests.conftest import word_model


def test_known_ranking_gives_known_ndcg_mrr_and_recall():
    # q1's relevant document ranks 2nd (behind d_near), q2's ranks 1st.
    model = word_model(
        {
            "q1": [1.0, 0.0, 0.0],
            "q2": [0.0, 1.0, 0.0],
            "near": [1.0, 0.1, 0.0],
            "rel1": [1.0, 0.5, 0.0],
            "rel2": [0.0, 1.0, 0.1],
            "far": [0.0, 0.0, 1.0],
        }
    )
    test = Dataset.from_dict({"query": ["q1", "q2"], "answer": ["rel1", "rel2"]})
    triplets = Dataset.from_dict({"query": ["q1", "q2"], "answer": ["rel1", "rel2"], "negative": ["near", "far"]})
    retrieval = build_retrieval_task(test, ["near", "rel1", "rel2", "far"])
    metrics = evaluate(model, build_evaluator(triplets, retrieval, batch_size=4))
    assert metrics["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert metrics["recall@1"] == pytest.approx(0.5)
    assert metrics["recall@10"] == pytest.approx(1.0)
    assert metrics["map@100"] == pytest.approx(0.75)
    assert metrics["triplet_accuracy"] == pytest.approx(0.5)  # rel1 loses to near, rel2 beats far


def test_the_held_out_side_alone_says_what_is_relevant():
    # Like a BEIR task's test qrels: a held-out question's training copy (answer B) is not counted relevant.
    test = Dataset.from_dict({"query": ["what is a permit?", "what is a permit?"], "answer": ["answer A", "answer C"]})
    task = build_retrieval_task(test, ["answer A", "answer B", "answer C", "extra doc"])
    (qid,) = task.queries
    assert {task.corpus[d] for d in task.relevant[qid]} == {"answer A", "answer C"}
    assert len(task.corpus) == 4 and task.grades is None and not task.graded


def graded_case() -> tuple:
    """Three questions on three axes whose documents rank as: q1 b, x, a (a of grade 2, b of 1); q2 c first
    (grade 1); q3 x3, y3, z3, d (d of grade 3)."""
    from tests.conftest import at, query_vector

    vectors = {"q1": query_vector(0), "q2": query_vector(1), "q3": query_vector(2)}
    vectors |= {"b": at(0.9, 0), "x": at(0.8, 0), "a": at(0.7, 0), "c": at(0.9, 1)}
    vectors |= {"x3": at(0.9, 2), "y3": at(0.8, 2), "z3": at(0.7, 2), "d": at(0.6, 2)}
    test = Dataset.from_dict(
        {"query": ["q1", "q1", "q2", "q3"], "answer": ["a", "b", "c", "d"], "relevance": [2, 1, 1, 3]}
    )
    triplets = Dataset.from_dict(
        {"query": ["q1", "q2", "q3"], "answer": ["a", "c", "d"], "negative": ["x", "b", "x3"]}
    )
    pool = ["a", "b", "c", "d", "x", "x3", "y3", "z3"]
    return word_model(vectors), test, triplets, pool


def test_graded_ndcg_equals_a_hand_computation_on_three_queries():
    model, test, triplets, pool = graded_case()
    log2 = math.log2
    q1 = (1 / log2(2) + 0 + 2 / log2(4)) / (2 / log2(2) + 1 / log2(3))  # b (1), x (0), a (2)
    q2 = 1.0
    q3 = (3 / log2(5)) / 3  # d at rank 4
    graded = evaluate(model, build_evaluator(triplets, build_retrieval_task(test, pool), batch_size=4))
    assert graded["ndcg@10"] == pytest.approx((q1 + q2 + q3) / 3)
    binary = evaluate(
        model, build_evaluator(triplets, build_retrieval_task(test.remove_columns("relevance"), pool), 4)
    )
    q1_binary = (1 + 1 / log2(4)) / (1 + 1 / log2(3))
    assert binary["ndcg@10"] == pytest.approx((q1_binary + q2 + 1 / log2(5)) / 3)
    assert binary["mrr@10"] == graded["mrr@10"]  # grades change NDCG only


def test_the_score_is_broken_down_by_whether_the_answer_was_trained_on():
    model, test, triplets, pool = graded_case()
    task = build_retrieval_task(test, pool, trained_answers={"c"})  # q2's answer was a training positive
    metrics = evaluate(model, build_evaluator(triplets, task, batch_size=4))
    log2 = math.log2
    q1 = (1 + 2 / log2(4)) / (2 + 1 / log2(3))
    assert metrics["ndcg@10_seen_answers"] == pytest.approx(1.0)
    assert metrics["ndcg@10_unseen_answers"] == pytest.approx((q1 + 3 / log2(5) / 3) / 2)
    assert list(metrics)[-1] == "triplet_accuracy"
    # With no question trained on, the whole score is the unseen group's: nothing is added.
    assert "ndcg@10_unseen_answers" not in evaluate(
        model, build_evaluator(triplets, build_retrieval_task(test, pool), 4)
    )


def test_matryoshka_dims_are_scored_separately_and_checked(small_splits, minilm):
    triplets = Dataset.from_dict({"query": ["a"], "answer": ["b"], "negative": ["c"]})
    retrieval = build_retrieval_task(small_splits["test"], list(small_splits["test"]["answer"]))
    metrics = evaluate(minilm, build_evaluator(triplets, retrieval, 32, [64], embedding_dimension=384))
    assert {"ndcg@10", "ndcg@10_dim64", "recall@100_dim64"} <= set(metrics)
    assert metrics["ndcg@10_dim64"] != metrics["ndcg@10"]
    from embedft.errors import ConfigError

    with pytest.raises(ConfigError, match="larger than the model's 384 dimensions"):
        build_evaluator(triplets, retrieval, 32, [512], embedding_dimension=384)


def test_metric_names_are_stable():
    raw = {
        "eval_triplet_cosine_accuracy": 0.7,
        "eval_ir_cosine_ndcg@10": 0.5,
        "ir_cosine_recall@100": 0.9,
        "ir_cosine_precision@10": 0.1,  # not reported
        "ir_dim128_cosine_mrr@10": 0.4,
        "ir_cosine_accuracy@1": 0.3,
        "eval_runtime": 1.0,
    }
    metrics = standard_metrics(raw)
    assert metrics == {
        "triplet_accuracy": 0.7,
        "ndcg@10": 0.5,
        "recall@100": 0.9,
        "mrr@10_dim128": 0.4,
        "accuracy@1": 0.3,
    }
    # The order people read them in: ranking metrics, then truncated sizes, triplet accuracy last.
    assert list(metrics) == ["ndcg@10", "accuracy@1", "recall@100", "mrr@10_dim128", "triplet_accuracy"]


def pool_task(questions: int = 6, documents: int = 60) -> tuple[RetrievalTask, list[tuple[str, str]]]:
    """Question i answered by document i (question 0 also by document 10), and each question's mined negative: the
    document ``documents - 1 - i``."""
    task = RetrievalTask(
        queries={f"q{i}": f"question {i}" for i in range(questions)},
        corpus={f"d{i}": f"document {i}" for i in range(documents)},
        relevant={f"q{i}": {f"d{i}"} for i in range(questions)},
    )
    task.relevant["q0"].add("d10")
    negatives = [(f"question {i}", f"document {documents - 1 - i}") for i in range(questions)]
    return task, negatives


def test_bounded_pool_holds_every_positive_and_mined_negative_within_max_pool():
    task, negatives = pool_task()
    bounded = bounded_retrieval_task(task, negatives, max_pool=20, max_queries=None, seed=12)
    assert len(bounded.corpus) == 20
    assert bounded.queries == task.queries and bounded.relevant == task.relevant
    positives = {doc for docs in task.relevant.values() for doc in docs}
    mined = {f"d{59 - i}" for i in range(6)}
    assert positives | mined <= set(bounded.corpus)
    assert all(task.corpus[doc] == text for doc, text in bounded.corpus.items())  # ids and texts of the whole pool


def test_bounded_pool_is_seeded():
    task, negatives = pool_task()
    first, again, other = (bounded_retrieval_task(task, negatives, 20, None, seed) for seed in (12, 12, 13))
    assert first.corpus == again.corpus
    assert first.corpus != other.corpus


def test_max_queries_keeps_that_many_questions_and_only_their_negatives():
    task, negatives = pool_task()
    bounded = bounded_retrieval_task(task, negatives, max_pool=4, max_queries=2, seed=12)
    assert len(bounded.queries) == 2 and set(bounded.relevant) == set(bounded.queries)
    kept = [int(qid[1:]) for qid in bounded.queries]
    needed = {doc for qid in bounded.queries for doc in task.relevant[qid]} | {f"d{59 - i}" for i in kept}
    assert set(bounded.corpus) == needed  # 4 or 5 documents: no room for a sample, nor for the others' negatives
    assert bounded_retrieval_task(task, negatives, 4, 2, seed=12).queries == bounded.queries


def test_positives_and_negatives_beyond_max_pool_are_all_kept_and_logged(caplog):
    task, negatives = pool_task()
    with caplog.at_level("WARNING", logger="embedft.evaluation"):
        bounded = bounded_retrieval_task(task, negatives, max_pool=5, max_queries=None, seed=12)
    assert len(bounded.corpus) == 13  # 7 positives and 6 negatives, no sample
    assert "exceed evaluation.max_pool=5" in caplog.text


def test_unbounded_task_comes_back_unchanged():
    task, negatives = pool_task()
    assert bounded_retrieval_task(task, negatives, max_pool=60, max_queries=None, seed=12) is task
    assert bounded_retrieval_task(task, negatives, max_pool=None, max_queries=6, seed=12) is task
    only_questions = bounded_retrieval_task(task, negatives, max_pool=None, max_queries=3, seed=12)
    assert len(only_questions.queries) == 3 and only_questions.corpus == task.corpus


def tiny_run() -> tuple[RunConfig, object, Dataset]:
    """Prepared data with 4 test questions and a pool of 12 documents, and its evaluation triplets."""
    from datasets import DatasetDict

    from embedft.data.prepared import PreparedData
    from embedft.data.rows import CleaningStats

    test = Dataset.from_dict({"query": [f"q{i}" for i in range(4)], "answer": [f"a{i}" for i in range(4)]})
    train = Dataset.from_dict({"query": ["q9"], "answer": ["a9"]})
    extra = [f"x{i}" for i in range(7)]
    data = PreparedData(
        splits=DatasetDict({"train": train, "test": test}),
        all_pairs=Dataset.from_dict({"query": [*test["query"], "q9"], "answer": [*test["answer"], "a9"]}),
        extra_documents=extra,
        stats=CleaningStats(rows_in=5, empty_dropped=0, duplicates_dropped=0, rows_out=5),
    )
    triplets = test.add_column("negative", ["x0", "x1", "x2", "x3"])
    return RunConfig(evaluation=EvaluationConfig(max_pool=9, matryoshka_dims=[2])), data, triplets


def tiny_word_model():
    rng = np.random.default_rng(0)
    words = [*(f"q{i}" for i in range(4)), *(f"a{i}" for i in range(4)), "q9", "a9", *(f"x{i}" for i in range(7))]
    return word_model({word: rng.normal(size=4).tolist() for word in words})


def test_step_evaluator_has_its_own_keys_and_the_standard_names():
    config, data, triplets = tiny_run()
    model = tiny_word_model()
    whole = evaluator_for(config, data, triplets, 4)(model)
    steps = evaluator_for(config, data, triplets, 4, during_training=True)(model)
    assert "ir_cosine_ndcg@10" in whole and "ir_dim2_cosine_ndcg@10" in whole
    assert "ir_steps_cosine_ndcg@10" in steps and "ir_steps_dim2_cosine_ndcg@10" in steps
    assert not {key for key in steps if key.startswith("ir")} & set(whole)  # TensorBoard tags never collide
    # The history holds step values only: they keep the plain names, metrics.json "evaluation" says their pool.
    assert list(standard_metrics(steps)) == list(standard_metrics(whole))
    assert standard_metrics({"eval_ir_steps_cosine_ndcg@10": 0.5, "eval_ir_steps_dim64_cosine_mrr@10": 0.4}) == {
        "ndcg@10": 0.5,
        "mrr@10_dim64": 0.4,
    }


def test_evaluation_sets_record_their_questions_and_documents():
    config, data, triplets = tiny_run()
    # A random split holds out whole groups of questions: none of their answers was trained on.
    groups = {"relevance": "binary", "questions_seen_answers": 0, "questions_unseen_answers": 4}
    whole = {"split": "test", "pool": "whole", "questions": 4, "documents": 12, **groups}
    assert evaluation_set(config, data, triplets).record() == whole
    steps = evaluation_set(config, data, triplets, during_training=True)
    assert steps.record() == {"split": "test", "pool": "bounded", "questions": 4, "documents": 9, **groups}
    assert {"a0", "a1", "a2", "a3", "x0", "x1", "x2", "x3"} <= set(steps.retrieval.corpus.values())
    config.evaluation.max_queries = 2
    fewer = evaluation_set(config, data, triplets, during_training=True)
    assert fewer.record()["questions"] == 2
    assert sorted(fewer.triplets["query"]) == sorted(fewer.retrieval.queries.values())  # triplet accuracy alike
    # final_pool: bounded gives baseline and final the same bounds, under the whole-pool metric names.
    config.evaluation.final_pool = "bounded"
    final = evaluation_set(config, data, triplets)
    assert final.record() == {
        "split": "test",
        "pool": "bounded",
        "questions": 2,
        "documents": 9,
        "relevance": "binary",
        "questions_seen_answers": 0,
        "questions_unseen_answers": 2,
    }
    assert not final.during_training


def test_the_pool_is_encoded_once_for_every_matryoshka_size(tmp_path, small_splits, minilm):
    from embedft.models.embedding_cache import EmbeddingCache

    test = small_splits["test"]
    pool = list(dict.fromkeys([*small_splits["train"]["answer"], *test["answer"]]))
    retrieval = build_retrieval_task(test, pool)
    triplets = test.add_column("negative", test["answer"][1:] + test["answer"][:1])
    encoded: list[int] = []
    original = minilm.encode_document

    def counting(texts, *args, **kwargs):
        encoded.append(len(texts))
        return original(texts, *args, **kwargs)

    minilm.encode_document = counting
    try:
        plain = evaluate(minilm, build_evaluator(triplets, retrieval, 32, [128, 64], 384))
        pool_encodes = sum(encoded)
        cache = EmbeddingCache(tmp_path)
        cached = evaluate(minilm, build_evaluator(triplets, retrieval, 32, [128, 64], 384, cache=cache))
        encoded.clear()
        again = evaluate(minilm, build_evaluator(triplets, retrieval, 32, [128, 64], 384, cache=cache))
    finally:
        minilm.encode_document = original
    assert pool_encodes == len(pool)  # once, not once per size (3 sizes), nor again for the triplets' documents
    assert encoded == []  # the second cached call reads the pool, and the triplets' documents come from it
    for key in plain:
        assert cached[key] == pytest.approx(plain[key], abs=1e-6)
        assert again[key] == cached[key]


def test_report_says_which_pool_the_step_scores_used():
    from embedft.run.report import protocol_notes

    metrics = {
        "baseline": {"ndcg@10": 0.5},
        "history": [{"step": 5, "ndcg@10": 0.6}],
        "data": {"dev_questions": 40, "eval_questions": 100, "retrieval_pool": 50000},
        "evaluation": {
            "baseline_and_final": {"split": "test", "questions": 100, "documents": 50000},
            "during_training": {"split": "dev", "questions": 20, "documents": 10000},
        },
    }
    notes = "\n".join(protocol_notes(metrics))
    assert "100 held-out test questions, each ranking all 50000 documents" in notes
    assert "a seeded sample of 20 of the 40 dev questions" in notes
    assert "a bounded pool of 10000 of the 50000 documents" in notes
    metrics["evaluation"]["during_training"] = {"split": "dev", "questions": 40, "documents": 50000}
    assert "bounded" not in "\n".join(protocol_notes(metrics))
    metrics["evaluation"] = {"baseline_and_final": "test", "during_training": "dev"}  # an older metrics.json
    assert "40 dev questions held out of training" in "\n".join(protocol_notes(metrics))


def test_model_prompts_become_the_trainers_column_prompts():
    model = load_model("packaged:all-MiniLM-L6-v2", "cpu")
    assert training_prompts(model) is None  # MiniLM's prompts are empty
    model.prompts = {"query": "task: search result | query: ", "document": "title: none | text: "}
    assert training_prompts(model) == {
        "query": "task: search result | query: ",
        "answer": "title: none | text: ",
        "negative": "title: none | text: ",
    }
    # encode_query applies the prompt, so mining and evaluation see the same texts as training.
    with_prompt = model.encode_query(["permit"])
    assert not np.allclose(with_prompt, model.encode(["permit"]))
    assert np.allclose(with_prompt, model.encode(["task: search result | query: permit"]), atol=1e-5)


def test_use_prompts_false_drops_them():
    model = load_model("packaged:all-MiniLM-L6-v2", "cpu", use_prompts=False)
    assert model.prompts == {} and training_prompts(model) is None
