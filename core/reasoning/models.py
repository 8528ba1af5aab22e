"""Tiny Llama-style causal LMs, and loading/saving any Hugging Face causal-LM directory.

A model directory is a plain Hugging Face directory (``config.json``, weights, tokenizer
files), so the same code path serves a 0.1M-parameter zoo model on a laptop and a real
LLM on a cluster: :func:`load_causal_lm` is ``AutoModelForCausalLM.from_pretrained``.
Head dimension is 32 (vLLM's CPU backend does not support 16).
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True)
class TinyLMConfig:
    """Shape of a tiny Llama (RMSNorm, RoPE, SwiGLU, tied embeddings)."""

    d_model: int = 64
    """Hidden size; a multiple of ``head_dim``."""
    n_layers: int = 2
    """Transformer blocks."""
    head_dim: int = 32
    """Attention head size: 32 or 64 so vLLM can load the model."""
    ffn_mult: float = 4.0
    """SwiGLU inner size = round(ffn_mult * d_model)."""
    max_len: int = 256
    """Longest prompt + solution in tokens (RoPE needs no table, this is metadata)."""

    def __post_init__(self) -> None:
        if self.head_dim not in (32, 64):
            raise ValueError(f"head_dim must be 32 or 64 (vLLM), got {self.head_dim}")
        if self.d_model % self.head_dim:
            raise ValueError(f"d_model {self.d_model} is not a multiple of head_dim {self.head_dim}")

    @property
    def n_heads(self) -> int:
        return self.d_model // self.head_dim


def build_model(cfg: TinyLMConfig, tokenizer, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama for ``tokenizer``'s vocabulary."""
    hf_cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.d_model,
        intermediate_size=round(cfg.ffn_mult * cfg.d_model),
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_len,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(hf_cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def num_params(model: torch.nn.Module) -> int:
    """Parameter count (tied weights counted once): the P of the compute-matched budget."""
    return sum(p.numel() for p in model.parameters())


def count_params(path: str | Path) -> int:
    """The parameter count of a Hugging Face model directory, without loading its weights
    (built on the meta device: a 9B model costs no memory)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return num_params(model)


def save_hf_dir(model, tokenizer, path: str | Path) -> Path:
    """Save model + tokenizer as a plain Hugging Face directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_causal_lm(path: str | Path, device: str | torch.device = "cpu", dtype=None):
    """Any Hugging Face causal-LM directory -> (model in eval mode, tokenizer).

    The tokenizer pads on the left (generation) and gets a pad token if it has none.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    model.to(device).eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def dir_digest(path: str | Path) -> str:
    """A content hash of a model directory (every file's relative path and bytes): the
    model's identity in stage keys, wherever the directory lives."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:20]
