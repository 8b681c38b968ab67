"""Training: trainer arguments from the config, the loss, callbacks, the trainer itself, checkpoints, and
several processes under torchrun.
"""
