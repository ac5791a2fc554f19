"""Training on several GPUs (issue 20): the strategy a request asks for (FT-020), the one the preflight decides and
writes into the spec, the accelerate config and command FSDP2 is launched with, and how a dead rank's failure is told.
CPU only: the GPUs are a ``Machine``; tests/trainer/test_fsdp_process.py trains two real ranks over gloo."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from ftapp.runs.devices import DeviceChoice
from ftapp.runs.failure_causes import classify
from ftapp.runs.fine_tune_request import FineTuneRequest, validate_fine_tune
from ftapp.runs.ingest import outcome_values
from ftapp.runs.launching import FSDP_CONFIG_FILE, launch_command
from ftapp.runs.machine import GpuInfo, Machine
from ftapp.runs.preflight import estimate
from ftapp.runs.specs import run_spec
from trainer.protocol import FAILED, Event

H200_MIB = 143_771
TWO_H200 = Machine((GpuInfo(0, "NVIDIA H200", H200_MIB, 1_000), GpuInfo(1, "NVIDIA H200", H200_MIB, 1_000)), 32, 256 * 1024)
ONE_H200 = Machine(TWO_H200.gpus[:1], 16, 128 * 1024)
CPU = Machine((), 2, 16_000)
LLAMA_70B = {
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}
# What accelerate launch (torchrun) printed when rank 1 of a real 2-process FSDP2 run here was SIGKILLed at step 3:
# rank 0 lost its peer in the middle of an all-gather and failed too, and torchrun's "Root Cause" names rank 0.
TORCHRUN_SUMMARY = """\
[default0]:RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:40859: Connection reset by peer
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
trainer FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-03_11:22:57
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 29224)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 29224
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-03_11:22:57
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 29223)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def problems(services, registered, machine: Machine, **changes) -> list[str]:
    values = dict(
        base_model_id=registered.model_id, dataset_id=registered.dataset_id, prompt_id=registered.prompt_id, adapter_name="sharded"
    )
    with services.db.transaction() as tx:
        found = validate_fine_tune(tx, FineTuneRequest(**{**values, **changes}), machine)
    return [f"{p.rule_id}: {p.message}" for p in found]


def test_fsdp2_is_refused_where_it_cannot_shard_and_for_methods_it_does_not_run(services, registered) -> None:
    assert problems(services, registered, TWO_H200, gpus="0,1", num_processes=2, strategy="fsdp2") == []
    one_gpu = problems(services, registered, ONE_H200, gpus="0", strategy="fsdp2")
    assert one_gpu == [
        "FT-020: FSDP2 shards the model over several GPUs; on one GPU (0) there is nothing to shard over and it would only "
        "add traffic: choose 2 or more GPUs, or auto/ddp"
    ]
    assert "on the CPU there is nothing to shard over" in problems(services, registered, CPU, gpus="cpu", strategy="fsdp2")[0]
    assert problems(services, registered, TWO_H200, gpus="0,1", num_processes=1, strategy="fsdp2") == [
        "FT-020: FSDP2 runs one process per GPU: 2 processes for GPUs 0,1 (got 1)"
    ]
    dpo = problems(services, registered, TWO_H200, gpus="0,1", num_processes=2, strategy="fsdp2", method="dpo")
    assert "FT-020: FSDP2 trains sft only; dpo keeps a whole copy per GPU: choose auto or ddp" in dpo
    assert problems(services, registered, TWO_H200, gpus="0,1", num_processes=2, strategy="zero3") == [
        "FT-020: strategy must be one of auto, ddp, fsdp2 (got 'zero3')"
    ]


def preflight_70b(strategy: str):
    return estimate(
        num_parameters=70_553_706_496,
        hidden_size=8192,
        num_layers=80,
        training_mode="lora",
        training={"per_device_train_batch_size": 8, "max_length": 2048, "max_steps": 30, "padding_free": True},
        train_rows=2000,
        sample_rows=[{"question": "What is 2 plus 3?", "answer": "5"}] * 4,
        template="{question} {answer}",
        devices=DeviceChoice("cuda", (0, 1)),
        machine=TWO_H200,
        config=LLAMA_70B,
        strategy=strategy,
        processes=2,
    )


def test_the_preflight_shards_a_70b_lora_over_two_gpus_and_says_why() -> None:
    chosen = preflight_70b("auto")
    assert (chosen.strategy, chosen.fits) == ("fsdp2", True)
    assert "strategy: auto chose FSDP2: a whole copy does not fit one GPU; DDP at least ~" in chosen.summary()
    assert chosen.memory.total_mib < H200_MIB * 0.95  # per GPU: the sharded plan's peak
    refused = preflight_70b("ddp")
    assert (refused.strategy, refused.fits) == ("ddp", False)
    assert "FSDP2 would fit: ~" in refused.summary()
    assert preflight_70b("fsdp2").seconds > 0


def test_a_submitted_run_carries_the_strategy_the_preflight_decided(services, registered) -> None:
    request = FineTuneRequest(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        adapter_name="sharded",
        gpus="0,1",
        num_processes=2,
        strategy="fsdp2",
    )
    run, preflight = services.runs.submit(request, TWO_H200)
    assert preflight.strategy == "fsdp2" and preflight.strategy_reasons[0].startswith("FSDP2 as asked")
    spec = run_spec(run)
    assert (spec.strategy, spec.num_processes) == ("fsdp2", 2)
    assert json.loads(Path(spec.run_dir, "spec.json").read_text())["strategy"] == "fsdp2"
    auto, _ = services.runs.submit(replace(request, adapter_name="whole", strategy="auto"), TWO_H200)
    assert run_spec(auto).strategy == "ddp"  # the demo model fits one GPU many times over
    # Each rank of a multi-GPU run reports its own failure: the first is the run's cause, the later ones are about it.
    values, _ = outcome_values(
        run,
        [
            Event(FAILED, 1.0, {"error_type": "OutOfMemoryError", "message": "rank 1 of 2: CUDA out of memory"}),
            Event(FAILED, 2.0, {"error_type": "RuntimeError", "message": "rank 0 of 2: Connection reset by peer"}),
        ],
    )
    assert (values["failure_type"], values["failure_message"]) == ("OutOfMemoryError", "rank 1 of 2: CUDA out of memory")


def test_fsdp2_launches_through_accelerate_with_the_config_it_writes(tmp_path: Path) -> None:
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    spec_path = tmp_path / "spec.json"
    command = launch_command("sft", spec_path, 2, "fsdp2")
    config = json.loads((tmp_path / FSDP_CONFIG_FILE).read_text())
    assert (config["distributed_type"], config["num_processes"], config["mixed_precision"]) == ("FSDP", 2, "no")
    assert config["fsdp_config"] == {
        "fsdp_version": 2,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_reshard_after_forward": True,
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_sync_module_states": True,
        "fsdp_offload_params": False,
        "fsdp_activation_checkpointing": False,
    }
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[-4:] == ["-m", "trainer", "sft", str(spec_path)]
    # As accelerate itself reads the command and the config: the environment each rank's FSDP plugin starts from.
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(command[3:]))
    assert args.use_fsdp and args.num_processes == 2 and args.tee == "3" and args.log_dir == str(tmp_path / "ranks")
    env = prepare_multi_gpu_env(args)
    assert {key: env[key] for key in ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "FSDP_STATE_DICT_TYPE", "FSDP_AUTO_WRAP_POLICY")} == {
        "ACCELERATE_USE_FSDP": "true",
        "FSDP_VERSION": "2",
        "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
        "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    }
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == env["FSDP_RESHARD_AFTER_FORWARD"] == "true"
    assert "FSDP_TRANSFORMER_CLS_TO_WRAP" not in env  # accelerate takes the model's own decoder layer class
    assert launch_command("sft", spec_path, 1) == [sys.executable, "-m", "trainer", "sft", str(spec_path)]


def test_ddp_launches_with_its_own_config_whatever_the_users_default_accelerate_config_says(tmp_path: Path, monkeypatch) -> None:
    import accelerate.commands.config.config_args as config_args
    import accelerate.commands.launch as accelerate_launch
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    # What `accelerate config` may have left in the user's cache: DeepSpeed on GPU 3 alone, compiled.
    default = tmp_path / "default_config.yaml"
    default.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\ngpu_ids: '3'\nnum_processes: 1\n"
        "deepspeed_config:\n  zero_stage: 3\ndynamo_config:\n  dynamo_backend: INDUCTOR\n",
        encoding="utf-8",
    )
    for module in (accelerate_launch, config_args):  # where launch looks for it, and where it reads it from
        monkeypatch.setattr(module, "default_config_file", str(default))
    spec_path = tmp_path / "spec.json"
    command = launch_command("sft", spec_path, 2)
    assert command[command.index("--config_file") + 1] == str(tmp_path / "accelerate_ddp.json")
    assert command[command.index("--tee") + 1] == "3"
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(command[3:]))
    assert (args.multi_gpu, args.use_deepspeed, args.use_fsdp, args.gpu_ids, args.num_processes) == (True, False, False, "all", 2)
    assert args.dynamo_backend == "no" and args.mixed_precision == "no"


def test_a_rank_killed_by_a_signal_is_the_cause_whatever_the_others_said() -> None:
    cause = classify(1, TORCHRUN_SUMMARY, "RuntimeError")
    assert cause.cause == "rank 1 killed"
    assert cause.suggestion.startswith("rank 1 was stopped by SIGKILL (out of host memory, or killed by hand)")
    raised = TORCHRUN_SUMMARY.replace("exitcode  : -9", "exitcode  : 1")
    assert classify(1, raised, "RuntimeError").cause != "rank 1 killed"  # a rank that raised tells its own error
