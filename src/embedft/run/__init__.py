"""One run, start to end: the run folder and its files, opening or resuming it, the stages in order
(:func:`embedft.run.pipeline.train_embed`), the report, the model card and provenance.
"""
