"""Tokenizer, tiny Llamas and the zoo's default shapes."""

import pytest
from transformers import AutoTokenizer

from core.reasoning.models import TinyLMConfig, build_model, load_causal_lm, num_params
from core.reasoning.tokenizer import build_char_tokenizer
from core.reasoning.zoo import ZooConfig


def test_char_tokenizer_round_trips_and_saves(tmp_path):
    tok = build_char_tokenizer()
    text = "Ann has 32 coins, gets 54.\n32+54=86\n#### 86"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok("é")["input_ids"][1] == tok.unk_token_id
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == ids


def test_default_zoo_shapes_have_parameter_ratio_at_least_3():
    tok = build_char_tokenizer()
    cfg = ZooConfig()
    p_wc, p_se = num_params(build_model(cfg.wc, tok)), num_params(build_model(cfg.se, tok))
    assert (p_wc, p_se) == (137_792, 452_640)
    assert p_se / p_wc >= 3
    assert cfg.wc.head_dim in (32, 64) and cfg.se.head_dim in (32, 64)  # vLLM-loadable


def test_bad_shapes_and_dirs_are_errors(tmp_path):
    with pytest.raises(ValueError, match="32 or 64"):
        TinyLMConfig(d_model=64, head_dim=16)
    with pytest.raises(ValueError, match="multiple"):
        TinyLMConfig(d_model=80)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_causal_lm(tmp_path)
