"""The GRPO recipe (RL with verifiable rewards): prompts → sampled completions → rewards → TRL ``GRPOTrainer``.

The rewards are the spec's ``RewardSpec`` checks (``trainer.recipes.rewards``), one TRL reward function each,
weighted by ``GRPOConfig.reward_weights``. Events, in order: ``started``, ``progress`` per logging
step (with ``metrics``: reward, reward_std, rewards/<name>/mean and /std, kl when beta > 0,
completions/mean_length... and ``generations_per_s``), ``eval`` (the same on the validation prompts,
prefixed ``eval_``), ``artifact {kind: checkpoint}``, ``sample`` (greedy answers to a few validation
prompts), ``artifact {kind: adapter|model}``, ``done``. The reference model (used only when beta > 0)
is described in ``trainer.recipes.policy_model``.
"""

from __future__ import annotations

from trl import GRPOConfig

from trainer.cancellation import Cancellation
from trainer.data.reward_prompts import RewardPrompts, build_reward_prompts
from trainer.protocol import DONE, SAMPLE, TrainSpec
from trainer.recipes.method_settings import grpo_arguments
from trainer.recipes.policy_model import drop_reference_adapter, longest_prompt_tokens, prepare_policy
from trainer.recipes.rewards import reward_functions
from trainer.recipes.rollout_engine import engine_arguments, rollout_engine, trainer_class
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

GrpoRun = RecipeRun[RewardPrompts]


def setup(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> GrpoRun:
    functions = reward_functions(spec.rewards)  # a bad pattern or a broken custom file fails before any loading
    inputs = load_inputs(spec)
    device, tokenizer = inputs.device, inputs.tokenizer
    data = build_reward_prompts(inputs.rows, inputs.split, spec.data, tokenizer)
    inputs.clock.lap("data")
    policy = prepare_policy(
        spec,
        device,
        has_validation=len(data.validation) > 0,
        config_class=GRPOConfig,
        prompt_tokens=longest_prompt_tokens(data.train["prompt"], tokenizer),
    )
    model, peft_config, resolved, config, notes = policy.model, policy.peft_config, policy.resolved, policy.config, policy.notes
    inputs.clock.lap("model")
    method = grpo_arguments(spec.method_settings, eval_batch_size=config.get("per_device_eval_batch_size"), notes=notes)
    engine = rollout_engine(device.kind, spec.training_mode, notes)
    args = GRPOConfig(**{**config, **method, **engine_arguments(engine)}, reward_weights=[float(reward.weight) for reward in spec.rewards])
    generations_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * spec.num_processes
    facts = {
        "run_id": spec.run_id,
        "device": device.kind,
        "device_name": device.name,
        "training_mode": spec.training_mode,
        "num_train_rows": len(data.train),
        "num_eval_rows": len(data.validation),
        "data_layout": "prompt_reference",
        "notes": notes,
        "recipe": announce_recipe(spec, resolved, notes),
        "mlflow_run_id": None,
        "reward_names": [function.__name__ for function in functions],
        "generation_engine": engine,  # the preflight times later GRPO runs by the pace of runs with the same engine
    }
    run_events = RunEvents(events, facts, method_metrics=True, items_per_step=("generations_per_s", generations_per_step))
    trainer = trainer_class(engine)(
        model=model,
        reward_funcs=functions,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation if len(data.validation) else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[run_events, StopOnCancel(cancellation), *inputs.faults],
    )
    prepare_trainer(trainer, resolved)
    inputs.clock.lap("trainer")
    tracking = start_tracking(spec, trainer, notes, facts)
    return RecipeRun(trainer, tokenizer, data, run_events, tracking)


def report_final(run: GrpoRun, events: EventSink) -> None:
    """The validation prompts' rewards for the final weights, and a few greedy answers."""
    trainer = run.trainer
    step = evaluate_final_weights(run, len(run.data.validation))
    drop_reference_adapter(trainer.model)  # the result is the trained adapter alone
    if run.data.samples and trainer.is_world_process_zero():
        events.emit(SAMPLE, step=step, rows=generate_samples(trainer.model, run.tokenizer, run.data.samples))


def run_grpo(spec: TrainSpec, events: EventSink, cancellation: Cancellation) -> bool:
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
