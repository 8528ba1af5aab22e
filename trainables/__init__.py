"""Ray Tune trainables: config dataclass in, `ablab.trial.report` out. No ML logic here.

REGISTRY maps the name a sweep file uses (`trainable: quickstart`) to its module.
"""

REGISTRY: dict[str, str] = {
    "quickstart": "trainables.quickstart",
    "synthetic": "trainables.synthetic",
    "distill": "trainables.distill",
    "reasoning": "trainables.reasoning",
}
