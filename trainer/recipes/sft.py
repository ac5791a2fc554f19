"""The supervised fine-tuning recipe: setup → train → final report → save → cleanup, reported as run events.

Shaped like torchtune's single-device recipes: each phase is one function reading top to bottom.
Events, in order: ``started`` (when the training loop begins), ``progress`` per logging step,
``eval`` at the eval interval and once at the end, ``artifact {kind: checkpoint}`` whenever a
checkpoint is complete, ``sample`` (greedy answers to a few validation rows), ``artifact {kind:
adapter|model}`` once the result is on disk, then ``done``. The caller (``trainer.recipes.sft_process``) turns
exceptions into ``failed`` and owns the exit status.
"""

from __future__ import annotations

from dataclasses import fields

from trl import SFTConfig, SFTTrainer

from trainer.cancellation import Cancellation
from trainer.data.tokenized_rows import tokenize_rows
from trainer.data.training_data import TrainingData, build_training_data, sample_cases
from trainer.fsdp import is_sharded, shard_on_cpu, start_process_group
from trainer.model_loading import load_model, read_model_shape
from trainer.protocol import DONE, SAMPLE, TrainSpec
from trainer.recipes.steps import (
    RecipeRun,
    announce_recipe,
    cleanup,
    done_details,
    evaluate_final_weights,
    load_inputs,
    prepare_trainer,
    save,
    start_tracking,
    train,
)
from trainer.recipes.validation_samples import generate_samples
from trainer.run_control import StopOnCancel
from trainer.run_events import EventSink, RunEvents
from trainer.training_arguments import MethodLoad, fit_to_installed, resolve_training

SftRun = RecipeRun[TrainingData]


def setup(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> SftRun:
    inputs = load_inputs(spec)
    device, tokenizer = inputs.device, inputs.tokenizer
    if is_sharded(spec):
        start_process_group(device.kind)  # before the weights load: rank 0 reads them, the others get slices
    data = build_training_data(
        inputs.rows,
        inputs.split,
        spec.data,
        tokenizer,
        completion_only_loss=bool(spec.training.get("completion_only_loss", True)),
        assistant_only_loss=bool(spec.training.get("assistant_only_loss", True)),
    )
    inputs.clock.lap("data")
    resolved = resolve_training(
        spec.training,
        device,
        training_mode=spec.training_mode,
        output_dir=str(spec.checkpoint_dir),
        has_validation=len(data.validation) > 0,
        completion_only_loss=data.completion_only_loss,
        assistant_only_loss=data.assistant_only_loss,
        model=read_model_shape(spec.model) if device.kind == "cuda" else None,
        load=MethodLoad("sft", lora_rank=int(spec.lora.get("r", 16)), shards=spec.num_processes if is_sharded(spec) else 1),
    )
    recipe = announce_recipe(spec, resolved)

    model, peft_config = load_model(spec, resolved, device)
    inputs.clock.lap("model")
    facts = {
        "run_id": spec.run_id,
        "device": device.kind,
        "device_name": device.name,
        "training_mode": spec.training_mode,
        "num_train_rows": len(data.train),
        "num_eval_rows": len(data.validation),
        "data_layout": data.layout,
        "notes": resolved.notes,
        "recipe": recipe,
        "mlflow_run_id": None,
    }
    run_events = RunEvents(events, facts)
    args = SFTConfig(**fit_to_installed(resolved.config, {f.name for f in fields(SFTConfig)}))
    if is_sharded(spec) and device.kind == "cpu":
        shard_on_cpu()
    # Tokenized in batches here, so that TRL skips its per-row passes over the rows (same tokens and labels).
    train_rows = tokenize_rows(data.train, tokenizer, args)
    eval_rows = tokenize_rows(data.validation, tokenizer, args) if len(data.validation) else None
    inputs.clock.lap("tokens")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[run_events, StopOnCancel(cancellation), *inputs.faults],
    )
    prepare_trainer(trainer, resolved)
    inputs.clock.lap("trainer")
    tracking = start_tracking(spec, trainer, resolved.notes, facts)
    return RecipeRun(trainer, tokenizer, data, run_events, tracking)


def report_final(run: SftRun, events: EventSink) -> None:
    """The eval loss of the final weights (whatever the eval interval) and a few greedy answers."""
    trainer = run.trainer
    step = evaluate_final_weights(run, len(run.data.validation))
    cases = sample_cases(run.data.validation, run.data.layout)
    # Under FSDP2 every rank generates: each layer's weights are gathered from all of them at every token.
    if cases and (trainer.is_fsdp_enabled or trainer.is_world_process_zero()):
        rows = generate_samples(trainer.model, run.tokenizer, cases)
        if trainer.is_world_process_zero():
            events.emit(SAMPLE, step=step, rows=rows)


def run_sft(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> bool:
    """setup → train → final report → save → cleanup; True when the run completed, False when a SIGTERM stopped
    training (after a checkpoint). Each recipe spells these phases out: the order is the recipe, read here."""
    run = setup(spec, events, cancellation)
    status = "FAILED"  # what MLflow records unless the run finishes or is stopped
    try:
        if not train(run, spec, cancellation):
            status = "KILLED"
            return False
        report_final(run, events)
        save(run, spec, events)
        status = "FINISHED"
    finally:
        cleanup(run, status)
    events.emit(DONE, **done_details(run))
    return True
