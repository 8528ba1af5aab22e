"""The WC/SE zoo shipped in the repository: built from today's default config, loadable."""

from core.reasoning.models import load_causal_lm, num_params
from core.reasoning.zoo import SHIPPED, ZooConfig, read_zoo, shipped_zoo_matches


def test_shipped_zoo_is_the_default_config_and_loads():
    assert shipped_zoo_matches(ZooConfig())
    summary = read_zoo(SHIPPED)
    params = {}
    for role in ("wc", "se"):
        model, tok = load_causal_lm(SHIPPED / role)
        params[role] = num_params(model)
        assert params[role] == summary["models"][role]["params"]
    assert params["se"] / params["wc"] >= 3
    # the recorded validation pass@1 shows the gap the studies rely on
    assert summary["models"]["wc"]["val/pass_at_1"] < summary["models"]["se"]["val/pass_at_1"]
