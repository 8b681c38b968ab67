"""training.length_chunks: the same batch's loss and gradients, computed on length-sorted chunks with less padding."""

from __future__ import annotations

import torch

from embedft.training.length_chunks import (
    CPU_CHUNK_ROWS,
    chunk_rows,
    forward_in_chunks,
    is_left_padded,
    length_chunked,
)

TEXTS = [
    "permit",
    "How long is a building permit valid after the decision gained legal force in the municipality?",
    "roof",
    "Who pays for the scaffolding when the facade of a terraced house is renovated by the housing association?",
    "deck fee",
    "A short one.",
    "Can a foreign construction firm grant the ROT deduction to a private customer in Sweden this year?",
]


def loss_and_gradients(model, chunks: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    loss_function = MultipleNegativesRankingLoss(model)
    columns = [model.tokenize(TEXTS), model.tokenize(TEXTS[1:] + TEXTS[:1]), model.tokenize(TEXTS[3:] + TEXTS[:3])]
    model.zero_grad()
    with length_chunked(model, chunks):
        loss = loss_function(columns, None)
    loss.backward()
    gradient = model[0].model.embeddings.word_embeddings.weight.grad.clone()
    return loss.detach(), gradient


def test_chunks_give_the_plain_steps_loss_and_gradients_within_fp32_noise(minilm):
    plain_loss, plain_gradient = loss_and_gradients(minilm, None)
    for rows in (1, 3):
        loss, gradient = loss_and_gradients(minilm, rows)
        assert torch.allclose(loss, plain_loss, atol=1e-5)
        assert torch.allclose(gradient, plain_gradient, atol=1e-6, rtol=1e-4)
    assert "forward" not in vars(minilm)  # the model is given back as it was


def test_each_chunk_is_padded_to_its_own_longest_text_in_buckets_and_rows_come_back_in_order():
    seen = []

    def forward(features):
        seen.append(tuple(features["input_ids"].shape))
        return {"sentence_embedding": features["input_ids"][:, :1].float()}

    lengths = [3, 70, 5, 40]
    mask = torch.tensor([[1] * n + [0] * (70 - n) for n in lengths])
    ids = torch.arange(4).unsqueeze(1) * mask
    out = forward_in_chunks(forward, {"input_ids": ids, "attention_mask": mask, "prompt_length": 0}, rows=2)
    assert seen == [(2, 70), (2, 32)]  # 70 and 40 together (70: the whole width), then 5 and 3 (32)
    assert out["sentence_embedding"].flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_left_padded_or_small_batch_runs_as_it_is():
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert is_left_padded(left) and not is_left_padded(left.flip(1))
    calls = []
    forward_in_chunks(lambda f: calls.append(f) or {"sentence_embedding": None}, {"attention_mask": left}, rows=1)
    assert len(calls) == 1 and calls[0]["attention_mask"] is left


def test_a_forward_already_patched_on_the_model_is_given_back(minilm):
    def patched(features, **kwargs):
        return type(minilm).forward(minilm, features, **kwargs)

    minilm.forward = patched
    try:
        with length_chunked(minilm, 2):
            assert minilm.forward is not patched
        assert minilm.forward is patched
    finally:
        del minilm.forward


def test_auto_chunks_on_the_cpu_only_and_a_number_or_null_is_taken_as_it_is():
    assert chunk_rows("auto", "cpu") == CPU_CHUNK_ROWS
    assert chunk_rows("auto", "cuda") is None
    assert chunk_rows("auto", "cuda:1") is None
    assert chunk_rows(8, "cuda") == 8
    assert chunk_rows(None, "cpu") is None
