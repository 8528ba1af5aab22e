"""Compute-optimal sampling for LLM reasoners (Bansal et al. 2024, "Smaller, Weaker, Yet
Better"), in plain PyTorch + transformers. One module per idea, in pipeline order:

- ``tasks``      one module per source: arith (exact step labels), gsm8k JSONL, gym
- ``tokenizer``  offline character tokenizer (a PreTrainedTokenizerFast)
- ``models``     tiny Llamas; load/save any Hugging Face causal-LM directory
- ``zoo``        the WC/SE pair trained from scratch (``python -m core.reasoning.zoo DIR``)
- ``sampling``   backend interface (base), hf / vllm / openai backends, config and budgets
- ``metrics``    coverage@k, diversity@k, FPR, filter precision/recall, pass@1, maj@k
- ``rewards``    exact-step PRM, learned PRM and ORM verifiers
- ``filters``    final_answer | process | orm | none
- ``sft``        fine-tuning with loss on the solution, early stopping on val pass@1
- ``evaluate``   pass@1 (greedy, sampled) and maj@k on held-out problems
- ``pipeline``   sample sets, paradigms (KD, self-improvement, weak-to-strong, REMOVE)
- ``experiment`` one trial top to bottom, with shared stages and resume

Nothing here imports Ray, MLflow or ablab.
"""
