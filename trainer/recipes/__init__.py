"""Training recipes (SFT, DPO, GRPO): ``*_process`` is the verb, the recipe reads setup -> train -> save."""
