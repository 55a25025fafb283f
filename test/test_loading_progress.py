"""Model loading says what it loads, how big it is and how long it took (stderr: a node's log, evaluate's output)."""
import re

from sparsevideonav_ros.policies.janusvln import models as janus_models
from sparsevideonav_ros.policies.sparsevideonav import models as svn_models
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig


def test_sparsevideonav_loading_names_each_part_with_its_size(capfd):
    folder = svn_models.tiny_checkpoint_dir()
    capfd.readouterr()
    svn_models.load_models(SparseVideoNavConfig(checkpoint=str(folder)))
    err = capfd.readouterr().err
    for part, sub in (("the backbone", "transformer"), ("the VAE", "vae"), ("the umT5 text encoder", "text_encoder"),
                      ("the action head", "action_head")):
        started = f"sparsevideonav: loading {part} ("
        assert re.search(re.escape(started) + r"[0-9.]+ [KMG]?B\) from " + re.escape(str(folder / sub)) + r"\.\.\.",
                         err), (part, err)
        assert f"sparsevideonav: loading {part}: done in " in err, (part, err)


def test_janusvln_reading_weights_shows_progress(capfd):
    folder = janus_models.tiny_checkpoint_dir()
    capfd.readouterr()
    janus_models.load_janusvln(folder)
    lines = [l for l in capfd.readouterr().err.splitlines() if l.startswith("janusvln: reading weights from")]
    assert lines and "100%" in lines[-1] and " MB " in lines[-1] and "file(s)" in lines[-1], lines


def test_building_the_tiny_models_says_so(tmp_path, capfd):
    janus_models.build_tiny_checkpoint(tmp_path / "janus")
    assert f"janusvln: building the tiny random model in {tmp_path / 'janus'}..." in capfd.readouterr().err
