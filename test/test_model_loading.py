"""Loading what the user asked for (SparseVideoNav): `action_head_dir` replaces the head in every layout and
the start-up log names it; the release export uses the file name the authors' diffusers loader reads."""
import copy
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from svn_helpers import write_release_layout
from sparsevideonav_ros.policies.base import Observation
from sparsevideonav_ros.policies.sparsevideonav import checkpoints, models
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy

INSTRUCTION = "walk forward and stop by the wooden door"
HEAD_WEIGHTS = "diffusion_pytorch_model.safetensors"


def frames(count, seed=0, shape=(96, 128, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(count)]


def plan_with(loaded, **config):
    policy = SparseVideoNavPolicy(SparseVideoNavConfig(seed=3, **config), models=loaded)
    policy.set_instruction(INSTRUCTION)
    plan = None
    for i, rgb in enumerate(frames(12)):
        plan = policy.step(Observation(stamp=i * 0.25, rgb=rgb))
    assert plan.state == "ok"
    return plan.waypoints, policy


def assert_same_weights(module, state):
    ours = module.state_dict()
    assert set(ours) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(ours[key].float(), value.float(), rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def tiny_models():
    return models.load_models(SparseVideoNavConfig())


@pytest.fixture(scope="module")
def other_head(tiny_models, tmp_path_factory):
    """The tiny set's head with every parameter moved by N(0, 0.2): same architecture, other weights (noise on
    all of them, so a head whose output layer starts at zero still plans differently)."""
    head = copy.deepcopy(tiny_models.action_head)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    folder = tmp_path_factory.mktemp("head") / "my_head"
    head.save_pretrained(folder)
    return folder


def test_tiny_with_action_head_dir_loads_that_head(tiny_models, other_head, caplog):
    with caplog.at_level(logging.INFO, logger="sparsevideonav_ros.policies.sparsevideonav"):
        loaded = models.load_models(SparseVideoNavConfig(action_head_dir=str(other_head)))
    assert_same_weights(loaded.action_head, load_file(str(other_head / HEAD_WEIGHTS)))
    own, _ = plan_with(tiny_models)
    replaced, policy = plan_with(loaded, action_head_dir=str(other_head))
    assert not np.allclose(own, replaced, atol=1e-4)
    lines = [r.getMessage() for r in caplog.records if "action head" in r.getMessage()]
    assert len(lines) == 1 and str(other_head) in lines[0] and "action_head_dir" in lines[0]
    assert str(other_head) in policy.describe()["action_head"]
    assert "own head" in tiny_models.action_head_source


def test_the_runner_logs_which_head_was_loaded(tiny_models, other_head):
    from sparsevideonav_ros.policies.runner import PolicyRunner
    loaded = models.load_models(SparseVideoNavConfig(action_head_dir=str(other_head)))
    messages = []
    runner = PolicyRunner(SparseVideoNavPolicy, lambda: SparseVideoNavPolicy(
        SparseVideoNavConfig(action_head_dir=str(other_head)), models=loaded), log_info=messages.append)
    assert runner.load(), runner.load_error
    loaded_lines = [m for m in messages if "loaded" in m]
    assert [m.split("; memory plan ")[0] for m in loaded_lines] == [
        f"policy 'sparsevideonav' loaded: head dit (auto: a trained action head is present): action head "
        f"{other_head} (sparsevideonav.action_head_dir, replacing "
        f"{models.tiny_checkpoint_dir() / 'action_head'})"]
    assert "; memory plan " in loaded_lines[0] and "on cpu" in loaded_lines[0]  # policies/memory_plan.py


def test_our_layout_with_action_head_dir_replaces_its_head(tiny_models, other_head, tmp_path):
    ours = tiny_models.save_pretrained(tmp_path / "ours")
    as_saved = models.load_models(SparseVideoNavConfig(checkpoint=str(ours)))
    assert_same_weights(as_saved.action_head, load_file(str(ours / "action_head" / HEAD_WEIGHTS)))
    assert str(ours / "action_head") in as_saved.action_head_source
    replaced = models.load_models(SparseVideoNavConfig(checkpoint=str(ours), action_head_dir=str(other_head)))
    assert_same_weights(replaced.action_head, load_file(str(other_head / HEAD_WEIGHTS)))
    assert str(other_head) in replaced.action_head_source
    # the rest of the set is still the folder's
    assert_same_weights(replaced.transformer, as_saved.transformer.state_dict())
    assert not np.allclose(plan_with(as_saved)[0], plan_with(replaced)[0], atol=1e-4)


@pytest.fixture(scope="module")
def release(tiny_models, tmp_path_factory):
    """The tiny set in the authors' release layout (+ a diffusers-format Wan folder for umT5 and the VAE config)."""
    release, wan, _ = write_release_layout(tiny_models, tmp_path_factory.mktemp("release"))
    return release, wan


def test_release_layout_takes_the_head_from_action_head_dir(tiny_models, other_head, release):
    folder, wan = release
    with pytest.raises(checkpoints.CheckpointError, match="action_head_dir"):
        models.load_models(SparseVideoNavConfig(checkpoint=str(folder), wan_diffusers_dir=str(wan), action_head="dit"))
    loaded = models.load_models(SparseVideoNavConfig(checkpoint=str(folder), wan_diffusers_dir=str(wan),
                                                     action_head_dir=str(other_head)))
    assert_same_weights(loaded.action_head, load_file(str(other_head / HEAD_WEIGHTS)))
    assert_same_weights(loaded.transformer, tiny_models.transformer.state_dict())
    assert str(other_head) in loaded.action_head_source


def test_missing_or_broken_head_folder_is_an_error_naming_the_file(other_head, tmp_path):
    def load(head):
        return models.load_models(SparseVideoNavConfig(action_head_dir=str(head)))

    with pytest.raises(checkpoints.CheckpointError, match=str(tmp_path / "nowhere" / "config.json")):
        load(tmp_path / "nowhere")
    head = tmp_path / "head"
    shutil.copytree(other_head, head)
    (head / HEAD_WEIGHTS).unlink()
    with pytest.raises(checkpoints.CheckpointError, match=str(head / HEAD_WEIGHTS)):
        load(head)
    (head / HEAD_WEIGHTS).write_bytes(b"not a safetensors file")
    with pytest.raises(checkpoints.CheckpointError, match=HEAD_WEIGHTS):
        load(head)
    state = load_file(str(other_head / HEAD_WEIGHTS))
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, str(head / HEAD_WEIGHTS))
    with pytest.raises(checkpoints.CheckpointError, match=f"{HEAD_WEIGHTS}.*{dropped}"):
        load(head)
    config = json.loads((other_head / "config.json").read_text())
    (head / "config.json").write_text(json.dumps({**config, "language_dim": config["language_dim"] * 2}))
    shutil.copy(other_head / HEAD_WEIGHTS, head / HEAD_WEIGHTS)
    with pytest.raises(checkpoints.CheckpointError):  # weights of another shape than its config says
        load(head)


def test_head_for_another_text_encoder_is_refused(tiny_models, tmp_path):
    from sparsevideonav_ros.policies.sparsevideonav.action_head import SparseVideoNavActionHead
    text_dim = tiny_models.text_encoder.hidden_size
    wide = SparseVideoNavActionHead.from_head_config(models.tiny_action_head_config(2 * text_dim))
    wide.save_pretrained(tmp_path / "wide")
    with pytest.raises(checkpoints.CheckpointError, match=f"width {2 * text_dim}"):
        models.load_models(SparseVideoNavConfig(action_head_dir=str(tmp_path / "wide")))


# -- the release export ----------------------------------------------------------------------------

def test_export_writes_the_file_the_authors_loader_reads(tiny_models, tmp_path):
    from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
    from diffusers.utils.hub_utils import _get_model_file

    svn_ckpt = checkpoints.export_release_transformer(tiny_models.transformer, tmp_path / "svn_ckpt")
    assert sorted(p.name for p in svn_ckpt.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    # the authors load svn_ckpt/ with diffusers' ModelMixin.from_pretrained, which locates weights this way
    found = _get_model_file(str(svn_ckpt), weights_name=SAFETENSORS_WEIGHTS_NAME, local_files_only=True)
    assert all(key.startswith("vgm.") for key in load_file(found))
    assert_same_weights(checkpoints.load_release_transformer(svn_ckpt), tiny_models.transformer.state_dict())


def test_release_loader_reads_diffusers_names_sharded_and_older_exports(tiny_models, tmp_path):
    expected = tiny_models.transformer.state_dict()
    svn_ckpt = checkpoints.export_release_transformer(tiny_models.transformer, tmp_path / "svn_ckpt")
    # a stale file of another name beside the diffusers one is not read (it would repeat every key)
    shutil.copy(svn_ckpt / HEAD_WEIGHTS, svn_ckpt / "model.safetensors")
    assert_same_weights(checkpoints.load_release_transformer(svn_ckpt), expected)

    older = tmp_path / "older"  # exports before the rename wrote model.safetensors
    older.mkdir()
    shutil.copy(svn_ckpt / "config.json", older / "config.json")
    shutil.copy(svn_ckpt / HEAD_WEIGHTS, older / "model.safetensors")
    assert_same_weights(checkpoints.load_release_transformer(older), expected)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(svn_ckpt / "config.json", sharded / "config.json")
    state = load_file(str(svn_ckpt / HEAD_WEIGHTS))
    keys = sorted(state)
    names = ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"]
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    for name, part in zip(names, halves):
        save_file({k: state[k] for k in part}, str(sharded / name))
    (sharded / checkpoints.RELEASE_WEIGHTS_INDEX).write_text(json.dumps(
        {"weight_map": {k: name for name, part in zip(names, halves) for k in part}}))
    assert_same_weights(checkpoints.load_release_transformer(sharded), expected)
    (sharded / names[1]).unlink()
    with pytest.raises(checkpoints.CheckpointError, match=names[1]):
        checkpoints.load_release_transformer(sharded)
