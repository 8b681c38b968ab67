"""Models and what they encode: finding and loading SentenceTransformer models (packaged, local, hub, distilled
static ones), their prompts and devices, and the on-disk cache of their embeddings.
"""
