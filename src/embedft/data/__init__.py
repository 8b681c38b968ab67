"""The data stage: (query, answer) pairs from a file, folder, packaged set or the hub, cleaned, and split into
train, dev and test; :func:`embedft.data.prepared.prepare_data` is what every command starts with.
"""
