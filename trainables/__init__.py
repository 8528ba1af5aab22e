"""Ray Tune trainables: config dataclass in, `ablab.trial.report` out. No ML logic here.

Each module is registered under the name a sweep file uses (`trainable: quickstart`) in
the `ablab.trainables` entry-point group of pyproject.toml.
"""
