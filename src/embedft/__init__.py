"""embedft: fine-tune text-embedding models on (question, answer) pairs with hard-negative mining and MNRL."""

__version__ = "0.1.0"
