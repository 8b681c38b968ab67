"""Scoring a model: retrieval metrics over the answer pool and triplet accuracy, through sentence-transformers'
evaluators, before, during and after training; metric keys under the names of ``metrics.json``.
"""
