"""The real models' config.json values that matter for speed, shared by the benches: each builds random weights in
one of these shapes (Llama's classes throughout)."""

from __future__ import annotations

from typing import Any

_LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
_LLAMA3 = dict(vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5)

LLAMA_32_1B: dict[str, Any] = dict(
    **_LLAMA3,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    tie_word_embeddings=True,
    rope_parameters={**_LLAMA3_ROPE, "factor": 32.0},
)
LLAMA_32_3B: dict[str, Any] = dict(
    **_LLAMA3,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=28,
    num_attention_heads=24,
    num_key_value_heads=8,
    head_dim=128,
    tie_word_embeddings=True,
    rope_parameters={**_LLAMA3_ROPE, "factor": 32.0},
)
LLAMA_31_8B: dict[str, Any] = dict(
    **_LLAMA3,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    tie_word_embeddings=False,
    rope_parameters={**_LLAMA3_ROPE, "factor": 8.0},
)
# Qwen2.5-7B's dimensions and q/k/v biases, in Llama's classes: transformers 5 loads a model_type "qwen2" directory's
# tokenizer as Qwen2Tokenizer, which turns a word-level bench vocabulary into nothing (every row trains on EOS alone).
# Llama with attention_bias is Qwen2 plus an o_proj bias (3,584 parameters a layer): the same matmuls, the same speed.
QWEN_25_7B: dict[str, Any] = dict(
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    head_dim=128,
    vocab_size=152064,
    tie_word_embeddings=False,
    attention_bias=True,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
)
# Checks the scripts on the CPU, not speed.
TINY: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)
