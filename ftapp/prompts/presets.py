"""Shipped config presets: seed 001's defaults, kept selectable, and the modern default.

DESIGN.md: the seed's values (fp16, paged AdamW, batch 1 x GA 4, 4-bit, LoRA on q/v only) are slow
and fp16 on bf16 weights fails with today's libraries, so they are a preset, not the default.
"""

from __future__ import annotations

from dataclasses import asdict

from ftapp.prompts.config_schemas import BitsAndBytesSettings, GenerationSettings, LoraSettings, TrainingSettings

SEED_001 = "seed 001 defaults"
MODERN = "modern default"

PRESETS: dict[str, dict[str, dict]] = {
    SEED_001: {
        "training_arguments": {
            "num_train_epochs": 1,
            "optim": "paged_adamw_32bit",
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 4,
            "warmup_ratio": 0.03,
            "max_grad_norm": 0.3,
            "learning_rate": 0.0002,
            "fp16": True,
            "logging_steps": 1,
            "lr_scheduler_type": "constant",
            "disable_tqdm": True,
            "report_to": "mlflow",
            "ddp_find_unused_parameters": False,
            "padding_free": False,
            "bf16": "false",
            "gradient_checkpointing": "false",
            "use_liger_kernel": "false",
            "max_length": 512,
            "packing": True,
        },
        "bitsandbytes_config": {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": "float16",
            "bnb_4bit_use_double_quant": True,
            "quant_method": "bitsandbytes",
        },
        # PEFT's default targets for Llama when the seed gave none: q and v projections only.
        "lora_config": {
            "r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "bias": "none",
            "task_type": "CAUSAL_LM",
            "target_modules": ["q_proj", "v_proj"],
        },
        "generation_config": {
            "do_sample": True,
            "temperature": 0.8,
            "max_new_tokens": 60,
            "top_p": 1,
            "top_k": 50,
            "num_beams": 1,
            "repetition_penalty": 1.1,
            "max_length": None,
        },
    },
    MODERN: {
        "training_arguments": asdict(TrainingSettings()),
        "bitsandbytes_config": asdict(BitsAndBytesSettings()),
        "lora_config": asdict(LoraSettings()),
        "generation_config": asdict(GenerationSettings()),
    },
}

DESCRIPTIONS = {
    SEED_001: "Fine Tuning Studio's shipped defaults: QLoRA nf4, batch 1 x GA 4, paged AdamW, fp16, LoRA on q/v.",
    MODERN: "bf16 where supported, LoRA on all linear layers, padding-free batches, fused AdamW, cosine schedule.",
}
