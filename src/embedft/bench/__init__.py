"""The project's benchmarks: quality over seeds and recipes (the ablation), scale on synthetic data, and the
synthetic pairs themselves. Each run is an ordinary ``python -m embedft train``.
"""
