"""embedft: fine-tune text-embedding models on (question, answer) pairs with hard-negative mining and MNRL.

The packages follow the data, and each imports only from those before it: the floor (``errors``, ``columns``,
``io``, ``masking``, ``logs``, ``hub``), then ``config``, ``data``, ``models``, ``mining``, ``evaluation``,
``training``, ``run`` (one run from start to end), ``inference``, ``bench`` and ``cli`` (the command line).
docs/how-it-works.md draws the picture.
"""

__version__ = "0.1.0"
