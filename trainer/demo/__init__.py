"""The offline demo kit: a tiny pre-trained Llama, its tokenizer, dataset and prompt."""
