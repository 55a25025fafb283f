"""JanusVLN per-step cost and memory vs episode length: dual implicit memory on vs off (a CPU-sized model).

Run: .venv/bin/python bench/bench_janusvln.py --threads 1   (about 3 minutes on an idle core)
     .venv/bin/python bench/bench_janusvln.py --lengths 1,8,32,64 --threads 1 --size tiny

Three settings of the `janusvln` policy (one action per 4 FPS frame):
  ours      spatial + semantic memory (VGGT KV cache, Qwen visual-token KV cache; 8 + 48 frame windows)
  release   spatial memory only; re-encode up to 9 uniformly chosen frames through Qwen every step
  none      no memory: the aggregator recomputed over every frame of the episode, 9 frames re-encoded
`ours` and `release` run real episodes. `none` holds nothing but the episode's frames, so its state at step L
is made by storing L - 1 frames (the O(L^2) episode is skipped). For each episode length L: the wall time of
one step through the PolicyRunner as policy_node feeds it (observe + decide; median of steps L..L+2), split into
the spatial part (aggregator + merger) and the rest, the bytes the policy holds between steps (caches and
stored frames), and the resident-memory growth during the step (sampled; approximate).

The model is random (built once into the cache folder and loaded through the real loader; its language
model is nudged to answer MOVE_FORWARD, so every setting decodes the same 3 tokens). The paper's "up to 90%
less inference overhead" compares the VGGT part with and without the cache at 7B/1B scale on a GPU; here the
same ratio is measured at a CPU size, where the language model's share of a step is much smaller.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _machine import command_line, print_machine  # noqa: E402
from sparsevideonav_ros.policies.janusvln import models  # noqa: E402
from sparsevideonav_ros.policies.model_cache import cached_folder  # noqa: E402
from sparsevideonav_ros.policies.janusvln.configuration_janusvln import JanusVLNConfig  # noqa: E402
from sparsevideonav_ros.policies.janusvln.policy import JanusVLNPolicy  # noqa: E402
from sparsevideonav_ros.policies.janusvln.spatial import AggregatorConfig  # noqa: E402
from sparsevideonav_ros.policies.runner import PolicyRunner  # noqa: E402

SETTINGS = {"ours": dict(spatial_memory=True, semantic_memory=True),
            "release": dict(spatial_memory=True, semantic_memory=False),
            "none": dict(spatial_memory=False, semantic_memory=False)}
CPU_AGGREGATOR = AggregatorConfig(img_size=224, patch_size=14, embed_dim=192, depth=8, num_heads=3, mlp_ratio=4.0,
                                  num_register_tokens=4, patch_embed_depth=4, patch_embed_num_heads=3)
CPU_VERSION = "janusvln-bench-cpu-v2"


def cpu_architecture(tokenizer) -> models.Architecture:
    """224 x 168 input: 12 x 16 aggregator patches (197 tokens per frame), 6 x 8 = 48 Qwen tokens per image."""
    from transformers import Qwen2_5_VLConfig

    qwen = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
                         rms_norm_eps=1e-6, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         bos_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False),
        vision_config=dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=4, out_hidden_size=256,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[3], tokens_per_second=2, in_channels=3),
        tie_word_embeddings=False, **models.special_token_ids(tokenizer))
    qwen._attn_implementation = "sdpa"
    return models.Architecture(qwen=qwen, aggregator=CPU_AGGREGATOR, merger_hidden_dim=512, image_width=224)


def checkpoint(size: str) -> Path:
    if size == "tiny":
        return models.tiny_checkpoint_dir()
    tokenizer_source = models.tiny_checkpoint_dir()

    def build(folder: Path) -> None:
        print("building the CPU-sized random model once into the model cache ...", flush=True)
        models.build_tiny_checkpoint(folder, seed=0, tokenizer_from=tokenizer_source, architecture=cpu_architecture)

    return cached_folder(CPU_VERSION, "config.json", build)


class PeakRSS:
    """Resident-set growth during a block, sampled every millisecond from /proc (approximate)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def __enter__(self):
        self.start = self.peak = self.rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.rss())
        self.growth = self.peak - self.start


def held_bytes(policy: JanusVLNPolicy) -> int:
    frames = sum(f.nbytes for f in policy._frames)
    return policy.spatial_memory.nbytes + policy.semantic_memory.nbytes + frames


def timed_step(runner: PolicyRunner, step: int, rgb: np.ndarray, setting: str) -> dict:
    """One frame through the PolicyRunner, as policy_node feeds it (plan_every_frames 1: every frame plans)."""
    policy = runner.policy
    with PeakRSS() as peak:
        if not runner.add_frame(step * 0.25, rgb):
            raise RuntimeError(f"{setting}: frame {step} not sampled")
        (result,) = runner.process()
    if result.plan is None:
        raise RuntimeError(f"{setting}: step {step} failed: {result.error}")
    plan = result.plan
    if plan.state != "ok":
        raise RuntimeError(f"{setting}: step {step} ended in state {plan.state!r} ({policy.last_answer!r})")
    return dict(total=result.compute_s, spatial=plan.timings_s["spatial_s"], held=held_bytes(policy),
                peak=peak.growth)


def new_policy(janus, setting: str) -> JanusVLNPolicy:
    policy = JanusVLNPolicy(JanusVLNConfig(plan_every_frames=1, **SETTINGS[setting]), model=janus)
    policy.set_instruction("walk forward and stop by the wooden door")
    return policy


def runner_for(policy: JanusVLNPolicy) -> PolicyRunner:
    runner = PolicyRunner(JanusVLNPolicy, lambda: policy)
    runner.load()
    return runner


def run_episode(janus, setting: str, lengths: list[int], frames: list[np.ndarray]) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    if setting == "none":
        for length in lengths:
            policy = new_policy(janus, setting)
            # the no-memory policy's state after L - 1 steps is just those frames
            policy._frames = [janus.frame_inputs(frames[i % len(frames)]) for i in range(1, length)]
            policy._steps = policy._frames_seen = length - 1
            runner = runner_for(policy)
            for step in range(length, length + 3):
                steps[step] = timed_step(runner, step, frames[step % len(frames)], setting)
    else:
        runner = runner_for(new_policy(janus, setting))
        wanted = {length + k for length in lengths for k in range(3)}
        for step in range(1, max(wanted) + 1):
            result = timed_step(runner, step, frames[step % len(frames)], setting)
            if step in wanted:
                steps[step] = result
    result = {}
    for length in lengths:
        group = [steps[length + k] for k in range(3)]
        result[length] = {key: statistics.median(s[key] for s in group) for key in group[0]}
        result[length]["held"] = steps[length]["held"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="1,8,16,32,57,64,96", help="episode lengths (frames) to report")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--size", choices=("cpu", "tiny"), default="cpu", help="model size")
    args = parser.parse_args()
    print(command_line(), flush=True)
    lengths = sorted({int(v) for v in args.lengths.split(",")})
    torch.set_num_threads(args.threads)
    janus = models.load_janusvln(checkpoint(args.size))
    agg = janus.model.arch.aggregator
    dtype = str(next(janus.model.parameters()).dtype).replace("torch.", "")
    print_machine("cpu", dtype, "the janusvln policy's CPU default; bf16 is its CUDA dtype", args.threads)
    print(f"size {args.size}: aggregator dim {agg.embed_dim} x "
          f"{agg.depth} layers, Qwen {janus.model.arch.qwen.text_config.num_hidden_layers} layers of "
          f"{janus.model.arch.qwen.text_config.hidden_size}, input width {janus.processing.width}")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    with torch.no_grad():
        run_episode(janus, "ours", [1], frames)  # warm-up
        results = {}
        for setting in SETTINGS:
            started = time.perf_counter()
            results[setting] = run_episode(janus, setting, lengths, frames)
            print(f"  {setting}: {time.perf_counter() - started:.0f} s", flush=True)

    print("\nper-step wall time in ms (spatial part in brackets); held = bytes kept between steps (MiB); "
          "peak = RSS growth during the step (MiB, approximate)")
    header = (f'{"frames":>6} | {"ours":>14} {"release":>14} {"none":>14} | {"held ours":>9} {"release":>8} '
              f'{"none":>8} | {"peak ours":>9} {"none":>7} | {"step ours/none":>14} {"spatial ours/none":>17}')
    print(header)
    print("-" * len(header))
    for length in lengths:
        row = {s: results[s][length] for s in SETTINGS}
        ms = {s: f'{1e3 * row[s]["total"]:7.1f} ({1e3 * row[s]["spatial"]:4.1f})' for s in SETTINGS}
        mib = {s: row[s]["held"] / 2**20 for s in SETTINGS}
        peak = {s: row[s]["peak"] / 2**20 for s in SETTINGS}
        ratio = row["ours"]["total"] / row["none"]["total"]
        spatial = row["ours"]["spatial"] / row["none"]["spatial"]
        print(f'{length:>6} | {ms["ours"]:>14} {ms["release"]:>14} {ms["none"]:>14} | {mib["ours"]:>9.1f} '
              f'{mib["release"]:>8.1f} {mib["none"]:>8.1f} | {peak["ours"]:>9.1f} {peak["none"]:>7.1f} | '
              f'{ratio:>14.3f} {spatial:>17.3f}')
    longest = lengths[-1]
    ours, none = results["ours"][longest], results["none"][longest]
    print(f"\nat {longest} frames: a step with both memories costs {ours['total'] / none['total']:.3f}x the "
          f"no-memory step ({100 * (1 - ours['total'] / none['total']):.1f}% less), the spatial encoder "
          f"{ours['spatial'] / none['spatial']:.3f}x ({100 * (1 - ours['spatial'] / none['spatial']):.1f}% less); "
          f"ours vs release: {ours['total'] / results['release'][longest]['total']:.2f}x per step")


if __name__ == "__main__":
    main()
