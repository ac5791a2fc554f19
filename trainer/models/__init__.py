"""Base models brought into a home: GGUF files de-quantized into save_pretrained folders."""
