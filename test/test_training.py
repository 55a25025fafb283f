"""Action-head training: labels, the future cache, the accelerate trainer (learning, 2 processes = 1,
kill + resume bit-for-bit) and the command line's expected failures.

Subprocess runs use one torch thread each so that their float results are comparable across runs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training_helpers import (MOTIONS, synthetic_episode, synthetic_run, tiny_head_config, write_synthetic_cache)
from sparsevideonav_ros.datasets.episodes import EpisodeError
from sparsevideonav_ros.training.future_cache import CacheError, CachedSample, FutureCache, episode_fingerprint
from sparsevideonav_ros.training.labels import check_label_source, episode_labels, planning_frames
from sparsevideonav_ros.training.samples import frames_needing_futures, training_samples

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HELPER = HERE / "training_helpers.py"


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}"}


# -- labels and the cache --------------------------------------------------------------------------

def test_odometry_and_dataset_labels_are_the_next_eight_motions(tmp_path):
    episode = synthetic_episode(1, frames=24, with_actions=True)
    assert planning_frames(24) == [11, 15, 19, 23]
    for labels in ("odometry", "dataset"):
        np.testing.assert_allclose(episode_labels(episode, 11, labels), np.tile(MOTIONS[1], (8, 1)), atol=1e-9)
        assert episode_labels(episode, 19, labels) is None  # the episode ends 4 frames later
        assert frames_needing_futures(episode, labels) == [11, 15]
    assert frames_needing_futures(episode, "relabel") == [11, 15, 19, 23]
    # through the cache: both label sources give the recorded motion for every cached planning frame
    cache = FutureCache(tmp_path, {"labels": 1})
    write_synthetic_cache(cache, [episode])
    for labels in ("odometry", "dataset"):
        by_episode, summary = training_samples(cache, [episode], labels)
        assert [s.entry.frame for s in by_episode["ep001"]] == [11, 15] and summary.no_label == 2
        np.testing.assert_allclose(np.stack([s.actions for s in by_episode["ep001"]]), np.tile(MOTIONS[1], (2, 8, 1)),
                                   atol=1e-9)
    with pytest.raises(EpisodeError, match="'ep002'.*--labels dataset"):
        check_label_source(synthetic_episode(2, with_actions=False), "dataset")
    with pytest.raises(EpisodeError, match="'ep003'.*--labels odometry needs poses"):
        check_label_source(synthetic_episode(3, with_poses=False, with_actions=True), "odometry")


def test_cache_shards_are_renamed_into_place_and_indexed(tmp_path):
    episodes = [synthetic_episode(i, frames=24) for i in range(2)]
    cache = FutureCache(tmp_path, {"weights": "abc", "seed": 0})
    write_synthetic_cache(cache, episodes, shard_size=3)
    assert [p.name for p in cache.shards()] == ["shard-r0-000000.safetensors", "shard-r0-000001.safetensors",
                                                "shard-r0-000002.safetensors"]  # 8 samples, 3 per shard
    (cache.folder / "shard-r0-000003.safetensors.tmp").write_bytes(b"torn")  # a killed write
    (cache.folder / "shard-r1-000000.safetensors").write_bytes(b"a disk fault")  # skipped and reported
    index = cache.index()
    assert [p.name for p, _ in cache.skipped] == ["shard-r1-000000.safetensors"]
    (cache.folder / "shard-r1-000000.safetensors").unlink()
    assert sorted(index) == sorted((e.episode_id, t, episode_fingerprint(e)) for e in episodes for t in planning_frames(24))
    writer = cache.writer(rank=0, shard_size=1)
    assert writer.next_number == 3 and not list(cache.folder.glob("*.tmp"))  # the rank's stray .tmp is gone
    # an edited episode under the same id is not a cache hit
    edited = synthetic_episode(0, frames=28)
    by_episode, summary = training_samples(cache, [edited], "odometry")
    assert by_episode["ep000"] == [] and summary.not_cached == 5
    # another spec colliding into this folder is refused
    other = FutureCache(tmp_path, {"weights": "abc", "seed": 0})
    other.spec = {"weights": "other"}
    with pytest.raises(CacheError, match="other settings"):
        other.prepare()
    sample = CachedSample("ep9", 11, "f" * 16, "x", torch.zeros(16, 8, 8, 8), torch.zeros(3, 32))
    writer.add(sample)
    assert (cache.folder / "shard-r0-000003.safetensors").is_file() and ("ep9", 11, "f" * 16) in cache.index()


def test_an_edited_episode_is_generated_again_and_its_new_futures_are_found(tmp_path):
    """Same id, new instruction: its old futures do not count as cached (missing_futures, what the command
    line generates), and once regenerated the samples are read back with the new fingerprint, although the
    old shards (written first) still hold the same (id, frame)."""
    from sparsevideonav_ros.training.samples import missing_futures
    episode = synthetic_episode(0, frames=24)
    cache = FutureCache(tmp_path, {"edit": 1})
    write_synthetic_cache(cache, [episode])
    needed = {"ep000": planning_frames(24)}
    old = episode_fingerprint(episode)
    assert missing_futures(cache.index(), [episode], needed, {"ep000": old}) == {}
    episode.instruction = "go to the bedroom instead"
    new = episode_fingerprint(episode)
    assert new != old
    assert missing_futures(cache.index(), [episode], needed, {"ep000": new}) == {"ep000": planning_frames(24)}
    assert training_samples(cache, [episode], "odometry")[1].not_cached == 4
    write_synthetic_cache(cache, [episode])  # regenerated: new shards after the old ones
    assert missing_futures(cache.index(), [episode], needed, {"ep000": new}) == {}
    by_episode, summary = training_samples(cache, [episode], "odometry")
    assert summary.not_cached == 0 and [s.entry.frame for s in by_episode["ep000"]] == [11, 15]
    assert {s.entry.fingerprint for s in by_episode["ep000"]} == {new}


def test_episodes_named_alike_in_two_collections_do_not_share_futures(tmp_path):
    """walk_0001 of two collections, the same stamps (arange * 0.25) and instruction: the source path and the
    frames tell them apart; the same episode read twice keeps its fingerprint."""
    from sparsevideonav_ros.datasets.folder import read_episode, write_episode
    first = synthetic_episode(0, frames=12)
    first.episode_id = "walk_0001"
    write_episode(first, tmp_path / "monday" / "walk_0001")
    second = synthetic_episode(1, frames=12)
    second.episode_id = "walk_0001"
    second.frames.images = [np.full((16, 16, 3), 200, np.uint8)] * 12
    write_episode(second, tmp_path / "tuesday" / "walk_0001")
    a, b = (read_episode(tmp_path / day / "walk_0001") for day in ("monday", "tuesday"))
    assert (a.episode_id, a.instruction, list(a.stamps_s)) == (b.episode_id, b.instruction, list(b.stamps_s))
    assert episode_fingerprint(a) != episode_fingerprint(b)
    assert episode_fingerprint(a) == episode_fingerprint(read_episode(tmp_path / "monday" / "walk_0001"))
    # the same pixels in another place: another source, another fingerprint
    import shutil
    shutil.copytree(tmp_path / "monday", tmp_path / "copy")
    assert episode_fingerprint(read_episode(tmp_path / "copy" / "walk_0001")) != episode_fingerprint(a)
    # other frames under the same path and file sizes: the decoded pixels differ
    memory = synthetic_episode(2, frames=12)
    changed = synthetic_episode(2, frames=12)
    changed.frames.images = [np.full((16, 16, 3), 9, np.uint8)] * 12
    assert episode_fingerprint(memory) != episode_fingerprint(changed)


# -- training --------------------------------------------------------------------------------------

def test_training_beats_predicting_the_mean_on_held_out_episodes(tmp_path):
    """Synthetic futures that encode one of three motions: the trained head's validation error must be
    below a third of the mean baseline's, in metres and in radians."""
    from sparsevideonav_ros.policies.sparsevideonav.action_head import SparseVideoNavActionHead
    from sparsevideonav_ros.training.trainer import TrainingOptions, train_action_head
    train, val = synthetic_run(tmp_path)
    assert {s.entry.episode_id for s in train}.isdisjoint({s.entry.episode_id for s in val})
    options = TrainingOptions(batch_size=8, epochs=1000, max_steps=60, lr=2e-3, warmup_steps=2,
                              log_with="tensorboard", log_every=20, validation_steps=5, validate_every=30)
    result = train_action_head(train, val, tiny_head_config(), tmp_path / "head", options, log=lambda m: None,
                               backbone={"latent_grid": [8, 8], "text_dim": 32})
    validation = result.report["validation"]
    head, baseline = validation["head"], validation["mean_baseline"]
    assert head["translation_m"] < baseline["translation_m"] / 3, validation
    assert head["rotation_rad"] < baseline["rotation_rad"] / 3, validation
    assert result.report["losses_per_epoch"][-1] < 0.3 * result.report["losses_per_epoch"][0]
    loaded = SparseVideoNavActionHead.from_pretrained(tmp_path / "head")
    np.testing.assert_allclose(loaded.head_config.action_mean, np.stack([s.actions for s in train]).reshape(-1, 3).mean(0),
                               atol=1e-9)
    assert json.loads((tmp_path / "head" / "backbone.json").read_text())["latent_grid"] == [8, 8]
    events = list((tmp_path / "head" / "logs").rglob("events.out.tfevents.*"))  # accelerate's TensorBoard tracker
    assert events and max(e.stat().st_size for e in events) > 0
    with pytest.raises(ValueError, match="no training samples"):
        train_action_head([], val, tiny_head_config(), tmp_path / "empty", options)


def test_the_validation_split_is_over_episodes_with_samples():
    """Episodes without samples (too short to label, not cached) take no validation place: here the split
    over all six ids would hold out exactly the three empty ones and validate nothing."""
    from sparsevideonav_ros.training.samples import split_samples
    from sparsevideonav_ros.training.trainer import TrainingSample
    with_samples = ("ep000", "ep002", "ep003")
    by_episode = {f"ep{i:03d}": [TrainingSample(None, np.zeros((8, 3)))] * (2 if f"ep{i:03d}" in with_samples else 0)
                  for i in range(6)}
    train_ids, val_ids, train, val = split_samples(by_episode, 0.34, seed=0)
    assert val_ids and val_ids | train_ids == set(with_samples) and not val_ids & train_ids
    assert len(val) == 2 * len(val_ids) and len(train) == 2 * len(train_ids)


def test_validation_noise_is_per_sample_whatever_the_process_split(tmp_path):
    """The validation actions of a sample do not depend on which rank samples it or in which chunk: the
    two interleaved halves two processes sample give what one process gives."""
    from sparsevideonav_ros.policies.sparsevideonav.action_head import SparseVideoNavActionHead
    from sparsevideonav_ros.training.trainer import FutureDataset, TrainingOptions, sample_validation_actions
    _, val = synthetic_run(tmp_path)
    val = val[:6]
    from sparsevideonav_ros.policies import random_init
    head = random_init.randomize_(SparseVideoNavActionHead.from_head_config(tiny_head_config()), 0)  # noise matters
    dataset = FutureDataset(val, max(s.entry.tokens for s in val))
    options = TrainingOptions(validation_steps=2, seed=3)
    one = sample_validation_actions(head, dataset, range(6), options, "cpu")
    even, odd = (sample_validation_actions(head, dataset, range(r, 6, 2), options, "cpu", chunk_size=2) for r in (0, 1))
    # up to float round-off of other batch shapes
    torch.testing.assert_close(one[0::2], even, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(one[1::2], odd, atol=1e-5, rtol=1e-4)
    assert (one[0] - one[1]).abs().max() > 1e-3  # the noise does matter


def test_the_cache_key_covers_the_text_encoder_and_refuses_da3_without_its_folder(tmp_path):
    """umT5's device is part of the key (its embeddings differ by device in their last bits); relabelling with
    da3 and no --da3-dir is an error, not a digest of the current directory."""
    from sparsevideonav_ros.configs import ConfigError
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
    from sparsevideonav_ros.tools import train_action_head as tool
    from sparsevideonav_ros.training.future_cache import cache_key
    cpu, _ = tool._cache_spec(SparseVideoNavConfig(), "odometry")
    cuda, _ = tool._cache_spec(SparseVideoNavConfig(text_encoder_device="cuda"), "odometry")
    assert cache_key(cpu) != cache_key(cuda) and cpu["text_encoder"]["dtype"] == "float32"
    with pytest.raises(ConfigError, match="--pose-estimator da3 needs --da3-dir"):
        tool._cache_spec(SparseVideoNavConfig(pose_estimator="da3"), "relabel")
    (tmp_path / "da3").mkdir()
    (tmp_path / "da3" / "model.safetensors").write_bytes(b"weights")
    relabel, _ = tool._cache_spec(SparseVideoNavConfig(pose_estimator="da3", da3_dir=str(tmp_path / "da3")), "relabel")
    assert relabel["relabel"]["da3"]
    # a Hub download's .cache (locks, metadata) changes without the weights: not part of the digest
    from sparsevideonav_ros.training.future_cache import weights_digest
    (tmp_path / "da3" / ".cache").mkdir()
    (tmp_path / "da3" / ".cache" / "model.safetensors.lock").write_text("")
    assert weights_digest([tmp_path / "da3"]) == relabel["relabel"]["da3"]
    # the per-episode K (relabelling reads it) is in the episode's fingerprint
    from sparsevideonav_ros.datasets.episodes import CameraModel
    plain, with_k = synthetic_episode(1, frames=12), synthetic_episode(1, frames=12)
    with_k.camera = CameraModel(16, 16, camera_matrix=np.array([[12.0, 0, 8], [0, 12.0, 8], [0, 0, 1]]))
    assert episode_fingerprint(plain) != episode_fingerprint(with_k)


def test_resume_of_another_run_is_a_training_error(tmp_path):
    """--resume with changed options (here the lr) is refused with a TrainingError (the command line's one
    line, exit 2), not a traceback; the same options resume."""
    from sparsevideonav_ros.training.trainer import TrainingError, TrainingOptions, train_action_head
    train, val = synthetic_run(tmp_path)
    options = TrainingOptions(batch_size=8, epochs=1000, max_steps=2, lr=2e-3, warmup_steps=0, checkpoint_every=2,
                              log_with="none", validation_steps=2)
    quiet = dict(log=lambda m: None)
    assert train_action_head(train, val[:2], tiny_head_config(), tmp_path / "head", options, **quiet).step == 2
    import dataclasses
    # how often it validates is not what it trains: resumable with another --validate-every
    resumed = train_action_head(train, val[:2], tiny_head_config(), tmp_path / "head",
                                dataclasses.replace(options, validate_every=1), resume=True, **quiet)
    assert resumed.step == 2 and resumed.status == "finished"
    with pytest.raises(TrainingError, match="--resume: the checkpoint was written for other data or options"):
        train_action_head(train, val[:2], tiny_head_config(), tmp_path / "head",
                          dataclasses.replace(options, lr=1e-3), resume=True, **quiet)


def test_generation_ranks_split_the_episodes_and_give_the_single_process_futures(tmp_path):
    """Two ranks (run one after the other here) generate disjoint episode sets whose union is, bit for bit,
    what one process generates: the noise is seeded per plan, not per process."""
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
    from sparsevideonav_ros.policies.sparsevideonav.models import load_models
    from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy
    from sparsevideonav_ros.training.future_cache import ShardReader
    from sparsevideonav_ros.training.generation import assign_episodes, generate_futures
    assert assign_episodes([16, 40, 16, 24], 2) == [[1, 2], [0, 3]]  # longest first to the least loaded: 56 vs 40
    config = SparseVideoNavConfig(sampler_steps=2)
    policy = SparseVideoNavPolicy(config, models=load_models(config))
    episodes = [synthetic_episode(i, frames=16 + 4 * i, size=64) for i in range(3)]
    every = lambda e: planning_frames(len(e))  # noqa: E731
    quiet = dict(progress=False, log=lambda m: None)
    split, single = FutureCache(tmp_path, {"world": 2}), FutureCache(tmp_path, {"world": 1})
    wanted = [generate_futures(policy, episodes, split, every, rank=r, world=2, **quiet).wanted for r in (0, 1)]
    assert generate_futures(policy, episodes, single, every, **quiet).generated == sum(wanted) == 2 + 3 + 4
    assert min(wanted) > 0 and {p.name.split("-")[1] for p in split.shards()} == {"r0", "r1"}
    reader = ShardReader()
    a, b = split.index(), single.index()
    assert sorted(a) == sorted(b)
    assert all(torch.equal(reader.row(a[k], "future_latents"), reader.row(b[k], "future_latents")) for k in a)
    assert generate_futures(policy, episodes, split, every, **quiet).generated == 0  # all cached: nothing again
    # ep000 and ep001 see the same frames and instruction up to frame 11: their futures there differ all the
    # same (noise seeded per episode and frame, not one draw for every plan)
    at_11 = {k[0]: reader.row(v, "future_latents") for k, v in b.items() if k[1] == 11}
    assert (at_11["ep000"].float() - at_11["ep001"].float()).abs().max() > 1e-3
    policy.config.seed = -1
    with pytest.raises(ValueError, match="seed must be >= 0"):
        generate_futures(policy, episodes, FutureCache(tmp_path, {"random": 1}), every, **quiet)


def _train(workdir: Path, out: Path, *extra: str, launcher: tuple = (), step_delay: float = 0.0,
           wait: bool = True):
    command = [*launcher] if launcher else [sys.executable]
    command += [str(HELPER), "train", str(workdir), "--out", str(out), "--steps", "30", *extra]
    if step_delay:
        command += ["--step-delay", str(step_delay)]
    process = subprocess.Popen(command, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    if not wait:
        return process
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-3000:]
    return output


def _weights(out: Path) -> dict:
    return load_file(str(out / "diffusion_pytorch_model.safetensors"))


def _kill_at_step(process, step: int, sig: int) -> str:
    """Send ``sig`` once the run printed STEP <step>; returns its output."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.strip() == f"STEP {step}":
            process.send_signal(sig)
            break
    rest, _ = process.communicate(timeout=120)
    return "".join(lines) + rest


def test_two_processes_equal_one_at_the_same_global_batch(tmp_path):
    """accelerate launch, 2 CPU processes (gloo) x 2 accumulation steps x micro-batch 2 vs one process x 8:
    same global batch 8, same losses and weights up to float round-off (tolerances below; no dropout,
    whose masks each rank draws itself)."""
    synthetic_run(tmp_path)  # the cache, once
    _train(tmp_path, tmp_path / "one", "--dropout", "0")
    launch = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(29500 + os.getpid() % 400))
    output = _train(tmp_path, tmp_path / "two", "--dropout", "0", "--accumulation", "2", launcher=launch)
    assert "2 process(es) x 2 accumulation x 2" in output
    one, two = (json.loads((tmp_path / n / "training_report.json").read_text()) for n in ("one", "two"))
    assert (one["processes"], two["processes"]) == (1, 2) and two["backend"] == "gloo"
    np.testing.assert_allclose(two["losses_per_step"], one["losses_per_step"], rtol=1e-4, atol=1e-6)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3
    # and the runs are not trivially equal: training moved the weights
    assert max(a[k].abs().max().item() for k in a if "action_out" in k) > 0


def test_sigterm_then_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    """Bit-for-bit: SIGTERM at step 8 (saves a checkpoint and exits), --resume, SIGKILL at step 17 (the last
    periodic checkpoint is step 15), --resume to step 30: the same per-step losses and the same weights,
    bit for bit, as one uninterrupted run (dropout on: the RNG states are restored too)."""
    synthetic_run(tmp_path)
    # validating every 10 steps in the straight run only: validation must not touch the training RNG stream
    _train(tmp_path, tmp_path / "straight", "--validate-every", "10")
    out = tmp_path / "interrupted"
    process = _train(tmp_path, out, step_delay=0.1, wait=False)
    output = _kill_at_step(process, 8, signal.SIGTERM)
    assert process.returncode == 3 and "stopped by signal 15 at step" in output, output[-2000:]
    process = _train(tmp_path, out, "--resume", step_delay=0.1, wait=False)
    output = _kill_at_step(process, 17, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL and "resumed from" in output
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "step-00000015"
    output = _train(tmp_path, out, "--resume")
    assert "at step 15 of 30" in output
    straight, resumed = (json.loads((tmp_path / n / "training_report.json").read_text())
                         for n in ("straight", "interrupted"))
    assert resumed["losses_per_step"] == straight["losses_per_step"]
    a, b = _weights(tmp_path / "straight"), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- the command line ------------------------------------------------------------------------------

def _write_folder_episodes(root: Path, count: int, frames: int = 48, size: int = 64) -> Path:
    from sparsevideonav_ros.datasets.folder import write_episode
    from sparsevideonav_ros.sources.synthetic import SyntheticSource
    source = SyntheticSource(width=size, height=size, fps=4.0)
    source.open()
    for i in range(count):
        episode = synthetic_episode(i, frames=frames, size=size)
        episode.frames.images = [source.render(i * frames + k) for k in range(frames)]
        write_episode(episode, root / episode.episode_id)
    return root


def _write_bag(path: Path, episode) -> Path:
    """A bag as record:=true writes it: compressed camera frames, odometry at each frame, the instruction."""
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header, String

    from sparsevideonav_ros import bags
    from sparsevideonav_ros.core import images, se2
    from sparsevideonav_ros.nodes.common import seconds_to_stamp
    writer = bags.open_writer(path)
    jpeg = bags.add_connection(writer, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
    odom = bags.add_connection(writer, "/odom", "nav_msgs/msg/Odometry")
    text = bags.add_connection(writer, "/instruction", "std_msgs/msg/String")
    writer.write(text, int(100e9), serialize_message(String(data=episode.instruction)))
    for i, (stamp, pose) in enumerate(zip(episode.stamps_s, episode.poses)):
        ns = int((100 + stamp) * 1e9) + 1
        header = Header(stamp=seconds_to_stamp(100 + stamp), frame_id="camera_link")
        writer.write(jpeg, ns, serialize_message(CompressedImage(header=header, format="jpeg",
                                                                 data=images.encode_jpeg(episode.frames[i]))))
        odometry = Odometry(header=Header(stamp=header.stamp, frame_id="odom"))
        odometry.pose.pose.position.x, odometry.pose.pose.position.y = float(pose[0]), float(pose[1])
        _, _, odometry.pose.pose.orientation.z, odometry.pose.pose.orientation.w = se2.quaternion_from_yaw(float(pose[2]))
        writer.write(odom, ns, serialize_message(odometry))
    writer.close()
    return path


def _main(argv, capsys):
    from sparsevideonav_ros.tools import train_action_head
    code = train_action_head.main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_expected_failures_are_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    from sparsevideonav_ros.policies.sparsevideonav import models
    monkeypatch.setattr(models, "load_models", lambda *a, **k: pytest.fail("a model loaded before validation"))
    data = _write_folder_episodes(tmp_path / "data", 2, frames=24, size=16)
    common = ["--checkpoint", "tiny", "--cache", tmp_path / "cache", "--log-with", "none"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    cases = {
        "is not empty: pass --overwrite": [data, "--out", tmp_path / "full", *common],
        "holds no action head or training run": [data, "--out", tmp_path / "full", "--overwrite", *common],
        "no checkpoint in": [data, "--out", tmp_path / "new", "--resume", *common],
        "is not a folder": [data, "--out", tmp_path / "new", *common[2:], "--checkpoint", tmp_path / "nothing"],
        "needs the episode's own actions": [data, "--out", tmp_path / "new", "--labels", "dataset", *common],
        "the seed must be >= 0": [data, "--out", tmp_path / "new", "--seed", "-1", *common],
        "--batch-size 3 must be a multiple of processes x accumulation steps (1 x 2)":
            [data, "--out", tmp_path / "new", "--batch-size", "3", "--gradient-accumulation-steps", "2", *common],
    }
    for expected, argv in cases.items():
        code, captured = _main(argv, capsys)
        assert code == 2 and expected in captured.err and "Traceback" not in captured.err, (expected, captured)
        assert len(captured.err.strip().splitlines()) == 1
    # a model set the memory plan refuses (PolicyError from load_models): one line too
    from sparsevideonav_ros.policies.base import PolicyError

    def refused(*args, **kwargs):
        raise PolicyError("sparsevideonav: the model set needs 80.0 GiB, 24.0 GiB free")
    monkeypatch.setattr(models, "load_models", refused)
    code, captured = _main([data, "--out", tmp_path / "new", *common], capsys)
    assert code == 2 and captured.err.strip() == ("train_action_head: error: sparsevideonav: the model set needs "
                                                  "80.0 GiB, 24.0 GiB free"), captured.err
    monkeypatch.setattr(models, "load_models", lambda *a, **k: pytest.fail("a model loaded before validation"))
    # bad input: a NaN pose, found before any model loads, naming the episode and the frame
    poses = (data / "ep001" / "poses.csv").read_text().splitlines()
    poses[6] = ",".join(poses[6].split(",")[:2] + ["nan", "0.0", "0.0"])
    (data / "ep001" / "poses.csv").write_text("\n".join(poses) + "\n")
    code, captured = _main([data, "--out", tmp_path / "new", *common], capsys)
    assert code == 2 and "ep001" in captured.err and "frame 5" in captured.err, captured.err
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"  # nothing was touched
    # an unreadable frame (only decoding finds it: stamps, poses and instruction are fine)
    corrupt = _write_folder_episodes(tmp_path / "corrupt", 1, frames=24, size=16)
    next((corrupt / "ep000" / "frames").glob("000005.*")).write_bytes(b"not an image")
    code, captured = _main([corrupt, "--out", tmp_path / "new", *common], capsys)
    assert code == 2 and "'ep000'" in captured.err and "frame 5" in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.err.strip().splitlines()[-1].startswith("train_action_head")


def test_overwrite_keeps_the_old_run_until_the_new_one_trains(tmp_path, capsys, monkeypatch):
    """--overwrite moves the old run aside only when training starts (futures generated): a run that fails
    to start training puts it back as it was."""
    from sparsevideonav_ros.training import trainer

    def refused(*args, **kwargs):
        assert not (tmp_path / "head").exists() and (tmp_path / "head.overwritten" / "training_report.json").is_file()
        raise trainer.TrainingError("refused for the test")
    monkeypatch.setattr(trainer, "train_action_head", refused)
    data = _write_folder_episodes(tmp_path / "data", 1, frames=24)
    (tmp_path / "head").mkdir()
    (tmp_path / "head" / "training_report.json").write_text('{"old": true}')
    code, captured = _main([data, "--out", tmp_path / "head", "--overwrite", "--checkpoint", "tiny", "--cache",
                            tmp_path / "cache", "--log-with", "none", "--sampler-steps", "1"], capsys)
    assert code == 2 and captured.err.strip().splitlines()[-1] == "train_action_head: error: refused for the test"
    assert json.loads((tmp_path / "head" / "training_report.json").read_text()) == {"old": True}
    assert not (tmp_path / "head.overwritten").exists()


def test_generation_killed_and_resumed_then_training_gives_a_head_the_policy_runs(tmp_path):
    """The command line on episode folders with the tiny model: SIGKILL mid-generation leaves whole shards
    only; the rerun generates just the missing futures (the same bytes as an uninterrupted cache), trains,
    and the head loads through sparsevideonav.action_head_dir (which checks it against the backbone)."""
    data = _write_folder_episodes(tmp_path / "data", 2)
    from sparsevideonav_ros.datasets.folder import read_episode
    recorded = read_episode(data / "ep001")
    recorded.poses = synthetic_episode(2, frames=48).poses  # another motion than the folders' episodes
    bag = _write_bag(tmp_path / "bag", recorded)
    base = [sys.executable, "-m", "sparsevideonav_ros.tools.train_action_head", str(data), str(bag), "--checkpoint", "tiny",
            "--shard-size", "1", "--sampler-steps", "2", "--log-with", "none"]
    straight = subprocess.run([*base, "--cache", str(tmp_path / "straight"), "--generate-only"], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = FutureCache(tmp_path / "straight", {})
    reference.folder = next(p for p in (tmp_path / "straight").iterdir() if p.is_dir())
    total = len(reference.index())
    assert total >= 3 * 8 - 1  # 48 frames: planning frames 11 .. 39 have 8 motions after them (the bag: >= 47)

    cache_root = tmp_path / "cache"
    process = subprocess.Popen([*base, "--cache", str(cache_root), "--out", str(tmp_path / "head"),
                                "--batch-size", "8", "--max-steps", "6", "--lr", "1e-3", "--val-fraction", "0.3"],
                               env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(cache_root.glob("*/shard-*.safetensors"))) < 3:
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=30)
    done = len(list(cache_root.glob("*/shard-*.safetensors")))
    assert 3 <= done < total, done  # killed mid-generation
    (tmp_path / "head").mkdir(exist_ok=True)
    (tmp_path / "head" / "training_report.json").write_text("{}")  # an earlier run: --overwrite may replace it
    (tmp_path / "head" / "old-run.txt").write_text("replaced by --overwrite")
    result = subprocess.run([*base, "--cache", str(cache_root), "--out", str(tmp_path / "head"), "--batch-size", "8",
                             "--max-steps", "6", "--lr", "1e-3", "--val-fraction", "0.3", "--overwrite"],
                            env=_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{total - done} of {total} futures to generate" in result.stdout, result.stdout
    resumed = FutureCache(cache_root, {})
    resumed.folder = reference.folder.parent.parent / "cache" / reference.folder.name  # same key: same settings
    index_a, index_b = reference.index(), resumed.index()
    assert sorted(index_a) == sorted(index_b) and len(resumed.shards()) == total  # no duplicate, no torn shard
    from sparsevideonav_ros.training.future_cache import ShardReader
    reader = ShardReader()
    for key in index_a:
        assert torch.equal(reader.row(index_a[key], "future_latents"), reader.row(index_b[key], "future_latents"))

    assert not (tmp_path / "head" / "old-run.txt").exists() and not (tmp_path / "head.overwritten").exists()
    report = json.loads((tmp_path / "head" / "training_report.json").read_text())
    assert report["data"]["episodes"] == 3 and report["steps"] == 6 and "train_action_head" in report["command"]
    assert report["data"]["validation_episodes"] == 1 and report["validation"]["head"]["samples"] >= 7
    from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
    from sparsevideonav_ros.policies.sparsevideonav.models import CheckpointError, load_models
    models = load_models(SparseVideoNavConfig(action_head="dit", action_head_dir=str(tmp_path / "head")))
    assert str(tmp_path / "head") in models.action_head_source
    backbone = json.loads((tmp_path / "head" / "backbone.json").read_text())
    (tmp_path / "head" / "backbone.json").write_text(json.dumps({**backbone, "latent_grid": [16, 16]}))
    with pytest.raises(CheckpointError, match="trained on 16x16 future latents"):
        load_models(SparseVideoNavConfig(action_head="dit", action_head_dir=str(tmp_path / "head")))
    # the weights digest training recorded is compared too (the load above passed it: the same function)
    assert backbone["weights"] == report["cache_spec"]["weights"]
    (tmp_path / "head" / "backbone.json").write_text(json.dumps({**backbone, "weights": "0" * 24}))
    with pytest.raises(CheckpointError, match=f"backbone weights 0{{24}} .*has weights digest {backbone['weights']}"):
        load_models(SparseVideoNavConfig(action_head="dit", action_head_dir=str(tmp_path / "head")))


def test_dataloader_workers_leave_ctrl_c_to_the_main_process():
    # Ctrl-C reaches the whole process group: a worker that dies on it would end the run without the
    # checkpoint the main process saves on SIGINT (StopRequest).
    import signal

    from sparsevideonav_ros.training.trainer import ignore_sigint
    previous = signal.getsignal(signal.SIGINT)
    try:
        ignore_sigint(0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
