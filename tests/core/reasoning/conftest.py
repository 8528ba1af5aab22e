"""Shared fixtures: a tiny random Llama saved as a plain Hugging Face directory."""

import pytest
import torch

from core.reasoning.models import TinyLMConfig, build_model, save_hf_dir
from core.reasoning.tokenizer import build_char_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A 1-layer, 32-wide random Llama with the char tokenizer, as a plain HF directory."""
    tok = build_char_tokenizer()
    model = build_model(TinyLMConfig(d_model=32, n_layers=1), tok, seed=0)
    return save_hf_dir(model, tok, tmp_path_factory.mktemp("tiny_lm"))
