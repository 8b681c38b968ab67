"""A BEIR folder read as it is: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{train,dev,test}.tsv`` (the layout of
BEIR and MTEB retrieval tasks) as pairs with their split and relevance grade, and the corpus as the pool."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embedft.columns import ANSWER, QUERY, RELEVANCE
from embedft.data.files import check_utf8, iter_json_lines
from embedft.data.formats import with_title
from embedft.data.values import json_row_problem, whole_number
from embedft.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

BEIR_SPLITS = ("train", "dev", "test")
SPLIT = "split"  # the pairs' column that names their qrels file


@dataclass
class BeirFolder:
    """What a BEIR folder holds: one pair per positive qrel, and every corpus document."""

    pairs: Dataset  # query, answer, split ("train", "dev" or "test"), relevance (the qrel's score, at least 1)
    documents: list[str]  # the whole corpus, each document as title + " " + text


def read_beir_folder(path: str) -> BeirFolder:
    """Read a BEIR folder: each qrel with a score above 0 becomes a (query text, document text) pair of its split.

    A qrel score of 0 marks a judged non-relevant document (TREC-COVID, Touche): it is not a positive. A qrel whose
    query or document is missing from ``queries.jsonl`` or ``corpus.jsonl`` is left out and counted, as MTEB leaves
    it out. Documents are read as ``title + " " + text``, like ``corpus_file`` rows.

    Raises:
        DataError: the folder, a required file (``corpus.jsonl``, ``queries.jsonl``, ``qrels/train.tsv``,
            ``qrels/test.tsv``) or a column is missing, or a file cannot be read.
    """
    from datasets import Dataset

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"data_format is beir but {path} is not a folder: point dataset_name at a folder with corpus.jsonl, "
            "queries.jsonl and qrels/"
        )
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"):
        if not (folder / name).is_file():
            raise DataError(
                f"BEIR folder {path} has no {name}: a BEIR folder holds corpus.jsonl, queries.jsonl and "
                "qrels/train.tsv and qrels/test.tsv (dev.tsv optional)"
            )
    corpus = read_texts(folder / "corpus.jsonl", titled=True)
    queries = read_texts(folder / "queries.jsonl", titled=False)
    columns: dict[str, list] = {QUERY: [], ANSWER: [], SPLIT: [], RELEVANCE: []}
    for split in BEIR_SPLITS:
        file = folder / "qrels" / f"{split}.tsv"
        if not file.is_file():
            continue
        missing = not_relevant = 0
        for query_id, document_id, score in read_qrels(file):
            if score <= 0:
                not_relevant += 1
            elif query_id not in queries or document_id not in corpus:
                missing += 1
            else:
                columns[QUERY].append(queries[query_id])
                columns[ANSWER].append(corpus[document_id])
                columns[SPLIT].append(split)
                columns[RELEVANCE].append(score)
        if missing:
            logger.warning(
                "%s: %d qrels name a query or document that the folder does not hold: left out", file, missing
            )
        if not_relevant:
            logger.info("%s: %d qrels of score 0 (judged not relevant) are not positives", file, not_relevant)
    logger.info(
        "Read BEIR folder %s: %d documents, %d queries, %s",
        path,
        len(corpus),
        len(queries),
        ", ".join(f"{columns[SPLIT].count(split)} {split} pairs" for split in BEIR_SPLITS),
    )
    return BeirFolder(Dataset.from_dict(columns), list(dict.fromkeys(corpus.values())))


def read_texts(path: Path, titled: bool) -> dict[str, str]:
    """``{_id: text}`` of a BEIR ``corpus.jsonl`` (``titled``: title + " " + text) or ``queries.jsonl``."""
    check_utf8(path)
    texts: dict[str, str] = {}
    fields = {"_id": True, "text": True, **({"title": False} if titled else {})}
    for number, row in iter_json_lines(path):
        issue = json_row_problem(row, fields)
        if issue is not None:
            raise DataError(
                f'{path} line {number} {issue}: BEIR rows are {{"_id": "...", "text": "..."}} (corpus rows '
                'also "title"), ids and texts as text'
            )
        text = with_title(row.get("title"), row["text"]) if titled else row["text"]
        texts[row["_id"]] = text.strip()
    if not texts:
        raise DataError(f"{path} holds no rows")
    return texts


def read_qrels(path: Path) -> list[tuple[str, str, int]]:
    """``(query-id, corpus-id, score)`` of a BEIR qrels file: tab-separated, with or without its header line."""
    check_utf8(path)
    rows: list[tuple[str, str, int]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (number == 1 and row[0] == "query-id"):
                continue
            if len(row) < 3:
                raise DataError(f"{path} line {number} must hold query-id, corpus-id and score, tab-separated")
            score = whole_number(row[2])
            if score is None:
                raise DataError(f"{path} line {number}: score '{row[2]}' is not a whole number (0, 1, 2, ...)")
            rows.append((row[0], row[1], score))
    return rows
