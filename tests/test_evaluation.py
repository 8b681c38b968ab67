"""Retrieval evaluation on hand-checkable cases, metric names, the retrieval task, and prompts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset

from embedft.evaluation import build_evaluator, build_retrieval_task, evaluate, standard_metrics
from embedft.models import load_model, training_prompts


def word_model(vectors: dict[str, list[float]]):
    """A real SentenceTransformer whose one-word texts embed to the given vectors (a StaticEmbedding)."""
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(vectors)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    weights = np.array([[0.0] * len(next(iter(vectors.values())))] + list(vectors.values()), dtype=np.float32)
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")


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
    retrieval = build_retrieval_task(test, test, ["near", "rel1", "rel2", "far"])
    metrics = evaluate(model, build_evaluator(triplets, retrieval, batch_size=4))
    assert metrics["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert metrics["recall@1"] == pytest.approx(0.5)
    assert metrics["recall@10"] == pytest.approx(1.0)
    assert metrics["map@100"] == pytest.approx(0.75)
    assert metrics["triplet_accuracy"] == pytest.approx(0.5)  # rel1 loses to near, rel2 beats far


def test_every_answer_of_a_question_is_relevant_across_splits():
    test = Dataset.from_dict({"query": ["what is a permit?"], "answer": ["answer A"]})
    everything = Dataset.from_dict(
        {"query": ["what is a permit?", "what is a permit?", "other?"], "answer": ["answer A", "answer B", "answer C"]}
    )
    task = build_retrieval_task(test, everything, ["answer A", "answer B", "answer C", "extra doc"])
    (qid,) = task.queries
    assert {task.corpus[d] for d in task.relevant[qid]} == {"answer A", "answer B"}
    assert len(task.corpus) == 4


def test_matryoshka_dims_are_scored_separately_and_checked(small_splits, minilm):
    triplets = Dataset.from_dict({"query": ["a"], "answer": ["b"], "negative": ["c"]})
    retrieval = build_retrieval_task(small_splits["test"], small_splits["test"], list(small_splits["test"]["answer"]))
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
