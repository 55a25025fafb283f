"""Shared pieces of the SparseVideoNav tests."""
import shutil
from pathlib import Path

from sparsevideonav_ros.policies.sparsevideonav import checkpoints
from sparsevideonav_ros.policies.sparsevideonav.video_latents import save_vae_original_format


def write_release_layout(models, root: Path) -> tuple[Path, Path, Path]:
    """``models`` (a SparseVideoNavModels) saved the way the authors ship theirs, with no action head.

    Returns (release, wan, ours): ``release`` holds svn_ckpt/ (the transformer under their key names) and
    Wan2.1_VAE.pth (the VAE in its original format); ``wan`` is a diffusers-format Wan folder with the text
    encoder, the tokenizer and the VAE config only (weights come from Wan2.1_VAE.pth); ``ours`` is the
    same set in our own layout (its action_head/ is the head the release lacks).
    """
    ours = models.save_pretrained(root / "ours")
    release = root / "release"
    checkpoints.export_release_transformer(models.transformer, release / "svn_ckpt")
    save_vae_original_format(models.vae, release / "Wan2.1_VAE.pth")
    wan = root / "wan"
    shutil.copytree(ours / "text_encoder", wan / "text_encoder")
    shutil.copytree(ours / "tokenizer", wan / "tokenizer")
    (wan / "vae").mkdir()
    shutil.copy(ours / "vae" / "config.json", wan / "vae" / "config.json")
    return release, wan, ours
