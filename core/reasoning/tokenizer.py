"""An offline character-level tokenizer that transformers accepts.

One token per character of printable ASCII plus newline, and four specials. It is a
``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model whose pre-tokenizer
isolates every character, so it saves and loads like any Hugging Face tokenizer and a
model directory holding it is a plain Hugging Face directory. Like Llama's tokenizers it
prepends ``<s>`` when asked for special tokens; characters outside the alphabet map to
``<unk>``.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))  # newline + printable ASCII


def build_char_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """The character tokenizer: ids 0-3 are ``<pad> <s> </s> <unk>``, then ``ALPHABET``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIALS + tuple(ALPHABET))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # every character is its own "word" ([\s\S] matches the newline too)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok.decoder = decoders.Fuse()  # join characters with no separator
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",  # generation pads on the left; training pads itself
        model_max_length=model_max_length,
    )
