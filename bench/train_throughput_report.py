"""The tables ``bench/train_throughput.py`` prints last: profiles, parity, recipes, 2-GPU scaling, throughput."""

from __future__ import annotations

import json

from train_throughput_runs import Measured


def print_tables(results: list[Measured], info: dict, profiles: dict) -> None:
    def fmt(value, spec):
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    for name, profile in profiles.items():
        if "first_step_by_self_s" in profile:
            print(
                f"\nprofile {name}: setup {profile['setup_s']} s, first step {profile['first_step_s']} s, "
                f"then steps of {profile['step_s'][1:]} s; first step (cumulative s, self s, function):"
            )
            for row in profile["first_step_by_cumulative_s"] + [("--", "--", "by self time:")] + profile["first_step_by_self_s"]:
                print(f"  {row[0]:>7} {row[1]:>7}  {row[2][:110]}")
        if "families_ms" in profile:
            print(f"\nprofile {name}: {profile['wall_ms']} ms wall over the profiled steps, GPU busy {profile['busy_ms']} ms")
            for family, ms in profile["families_ms"].items():
                print(f"  {family:22s} {ms:9.1f} ms  {ms / profile['wall_ms']:6.1%}")
            for ms, kernel, count in profile["top_kernels"][:8]:
                print(f"    {ms:8.1f} ms x{count:<5d} {kernel}")
    for result in results:
        if result.variant == "parity":
            d = result.detail
            print(
                f"\nparity ({result.model}, {d.get('steps_compared')} steps, same batches, attn={d.get('attn')}): max rel diff "
                f"{d.get('max_rel_diff')}, mean {d.get('mean_rel_diff')}, grad norms non-zero: {d.get('grad_norms_nonzero')} "
                f"-> {'PASS' if d.get('passed') else 'FAIL'}"
            )
        one_gpu = next((r for r in results if r.model == result.model and r.variant == "ftapp" and r.tokens_per_s), None)
        if result.variant == "ftapp 2 GPUs" and result.tokens_per_s and one_gpu:
            print(
                f"\nscaling ({result.model}): 2 GPUs {result.tokens_per_s:,.0f} tok/s / 1 GPU {one_gpu.tokens_per_s:,.0f} tok/s "
                f"= {result.tokens_per_s / one_gpu.tokens_per_s:.2f}x"
            )
        if result.variant.startswith("ftapp") and result.detail.get("recipe"):
            d = result.detail
            print(
                f"{result.model} {result.variant}: compile cache {d.get('compile_cache')}, submit->started "
                f"{d.get('submit_to_started_s')} s ({'; '.join(d.get('setup') or [])}), first step {d.get('first_step_s')} s; "
                f"recipe {json.dumps(d['recipe'])}"
            )
    print(
        f"\n{'model':9s} {'variant':18s} {'tok/s':>9s} {'MFU':>6s} {'peak GiB':>8s} {'1st loss':>8s} {'x seed':>7s} "
        f"{'x TRL':>6s} {'loss first->last':>17s}  note"
    )
    for result in results:
        if result.variant == "profile":
            continue
        same = {r.variant: r for r in results if r.model == result.model}
        seed, plain = same.get("seed"), same.get("plain TRL")
        x_seed = result.tokens_per_s / seed.tokens_per_s if result.tokens_per_s and seed and seed.tokens_per_s else None
        x_plain = result.tokens_per_s / plain.tokens_per_s if result.tokens_per_s and plain and plain.tokens_per_s else None
        curve = f"{result.losses[0]:.2f}->{result.losses[-1]:.2f}" if result.losses else "-"
        print(
            f"{result.model:9s} {result.variant:18s} {fmt(result.tokens_per_s, ',.0f'):>9s} {fmt(result.mfu, '.1%'):>6s} "
            f"{fmt(result.peak_gib, '.1f'):>8s} {fmt(result.first_loss_s, '.1f'):>8s} {fmt(x_seed, '.1f'):>7s} "
            f"{fmt(x_plain, '.1f'):>6s} {curve:>17s}  {result.error or ''}"
        )
