"""How ``python -m tests.bench.gpu_train`` prints its runs' results: the table, and a paragraph per run."""

from __future__ import annotations


def results_table(results: list[dict]) -> str:
    """One line per run: rates, memory, losses, F1, skipped steps and whether every check passed."""
    head = (
        f"{'ZeRO':>4} {'batch':>5} {'steps/s':>8} {'clips/s':>8} {'ms/step':>8} {'collate ms':>10} "
        f"{'peak MiB':>9} {'loss ep1 -> last':>17} {'valid F1':>8} {'test F1':>8} {'skipped':>7} "
        f"{'checks':>6}"
    )
    lines = [head]
    for r in results:
        last = r["history"][-1]["macro_f1"]
        ok = (
            r["all_losses_finite"]
            and r["only_lora_changed"]
            and (not r["gathered_adapter"]["checked"] or r["gathered_adapter"]["equal"])
        )
        peak = f"{r['peak_memory_mib']:.0f}" if r["peak_memory_mib"] is not None else "-"
        lines.append(
            f"{r['zero']:>4} {r['batch_size']:>5} {r['steps_per_s']:>8.2f} {r['clips_per_s']:>8.1f} "
            f"{1e3 * r['step_seconds']:>8.1f} {1e3 * r['collate_seconds_per_step']:>10.1f} {peak:>9} "
            f"{r['loss_first_epoch']:>7.3f} -> {r['loss_last_epoch']:<7.3f} "
            f"{last.get('valid', float('nan')):>8.3f} {last.get('test', float('nan')):>8.3f} "
            f"{str(r['skipped_steps']) + '/' + str(r['optimizer_steps']):>7} "
            f"{'ok' if ok else 'FAIL':>6}"
        )
    return "\n".join(lines)


def adapter_text(a: dict) -> str:
    if not a["checked"]:
        return "not checked"
    verdict = "= trained weights" if a["equal"] else "DIFFERS from the trained weights"
    return f"{a['tensors']} tensors ({a['empty']} empty) {verdict}"


def describe_result(r: dict) -> str:
    """A run's details in a paragraph: precision, devices, start-up, rates, losses and the adapter checks."""
    return (
        f"[{r['device']}] ZeRO-{r['zero']} batch {r['batch_size']} "
        f"(cuDNN SDPA {'on' if r['cudnn_sdpa'] else 'off'}): "
        f"weights {r['dtypes']} "
        f"on {r['param_devices']}, "
        f"deepspeed.initialize {r['deepspeed_init_seconds']:.1f} s, first epoch "
        f"{r['first_epoch_steps_per_s']:.2f} steps/s, eval {r['eval_clips_per_s']:.1f} clips/s, "
        f"{r['tokens_per_s']:.0f} tokens/s; loss step 1 {r['loss_first_step']:.3f} -> last step "
        f"{r['loss_last_step']:.3f}; {r['changed_tensors']} of {r['trainable_tensors']} LoRA tensors "
        "changed, "
        f"frozen changed: {r['frozen_changed'] or 'none'}; adapter saved plainly: "
        f"{adapter_text(r['adapter'])}; as a training checkpoint saves it (gathered): "
        f"{adapter_text(r['gathered_adapter'])}"
    )
