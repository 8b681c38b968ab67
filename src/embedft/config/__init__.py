"""The run configuration: its schema, reading YAML and ``key=value`` overrides into it, and the checks of its
values. It imports nothing of embedft above the floor (errors, columns, io, masking).
"""
