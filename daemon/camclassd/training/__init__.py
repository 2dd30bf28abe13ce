"""Your own classes: collect examples, check a dataset, train a new head on the shipped int8
backbone, evaluate, and install/roll back versions. Offline, numpy only (no TensorFlow).

Modules are imported by the command that needs them; `DatasetWriter` (writer.py) is the
component the daemon uses to save examples.
"""
