"""The DPO recipe: preference pairs → TRL ``DPOTrainer`` → an adapter, reported as run events like SFT's.

Events, in order: ``started``, ``progress`` per logging step (with ``metrics``: TRL's rewards/chosen,
rewards/rejected, rewards/margins, rewards/accuracies, logps/..., and ``pairs_per_s``), ``eval`` (the
same numbers on the validation pairs, prefixed ``eval_``), ``artifact {kind: checkpoint}``,
``sample`` (greedy answers to a few validation prompts, the chosen answer as reference), ``artifact
{kind: adapter|model}``, ``done``. The reference model is described in ``trainer.recipes.policy_model``.
"""

from __future__ import annotations

from trl import DPOConfig, DPOTrainer

from trainer.cancellation import Cancellation
from trainer.data.preference_data import PreferenceData, build_preference_data, preference_sample_cases
from trainer.protocol import DONE, SAMPLE, TrainSpec
from trainer.recipes.method_settings import dpo_arguments
from trainer.recipes.policy_model import drop_reference_adapter, prepare_policy
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

DpoRun = RecipeRun[PreferenceData]


def setup(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> DpoRun:
    inputs = load_inputs(spec)
    device, tokenizer = inputs.device, inputs.tokenizer
    data = build_preference_data(inputs.rows, inputs.split, spec.data, tokenizer)
    inputs.clock.lap("data")
    policy = prepare_policy(spec, device, has_validation=len(data.validation) > 0, config_class=DPOConfig)
    model, peft_config, resolved, config, notes = policy.model, policy.peft_config, policy.resolved, policy.config, policy.notes
    inputs.clock.lap("model")
    args = DPOConfig(**config, **dpo_arguments(spec.method_settings))
    pairs_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * spec.num_processes
    facts = {
        "run_id": spec.run_id,
        "device": device.kind,
        "device_name": device.name,
        "training_mode": spec.training_mode,
        "num_train_rows": len(data.train),
        "num_eval_rows": len(data.validation),
        "data_layout": data.layout,
        "notes": notes,
        "recipe": None,
        "mlflow_run_id": None,
    }
    run_events = RunEvents(events, facts, method_metrics=True, items_per_step=("pairs_per_s", pairs_per_step))
    trainer = DPOTrainer(
        model=model,
        ref_model=None,  # LoRA: the adapter-disabled base (or TRL's frozen copy of init_adapter); full: TRL's copy
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation if len(data.validation) else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[run_events, StopOnCancel(cancellation), *inputs.faults],
    )
    dropped = len(data.train) - len(trainer.train_dataset)
    if dropped:
        # TRL drops pairs whose prompt alone fills max_length: no answer token would be left to compare.
        notes.append(
            f"{dropped} of {len(data.train)} training pairs dropped: their prompt alone fills max_length ({args.max_length} tokens)"
        )
        facts["num_train_rows"] = len(trainer.train_dataset)
    facts["recipe"] = announce_recipe(spec, resolved, notes)
    prepare_trainer(trainer, resolved)
    inputs.clock.lap("trainer")
    tracking = start_tracking(spec, trainer, notes, facts)
    return RecipeRun(trainer, tokenizer, data, run_events, tracking)


def report_final(run: DpoRun, events: EventSink) -> None:
    """The validation pairs' loss and rewards for the final weights, and a few greedy answers."""
    trainer = run.trainer
    step = evaluate_final_weights(run, len(run.data.validation))
    drop_reference_adapter(trainer.model)  # the result is the trained adapter alone
    cases = preference_sample_cases(run.data.validation_cases)
    if cases and trainer.is_world_process_zero():
        events.emit(SAMPLE, step=step, rows=generate_samples(trainer.model, run.tokenizer, cases))


def run_dpo(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> bool:
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
