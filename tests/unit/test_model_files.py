"""Checkpoint and LoRA files on disk: listing, naming, refusing pickles, staying inside folders, rescans, hashes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from pico.catalog.files.catalog import ModelFiles
from pico.errors import InvalidRequest, ModelUnavailable
from tests.unit.safetensors_files import CHECKPOINTS, lora_pair, write

# Every file Python opens while a test watches (audit hooks cannot be removed, so this one is set once).
_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_audit)


@contextmanager
def opened_files():
    global _opened
    _opened = seen = []
    try:
        yield seen
    finally:
        _opened = None


class Clock:
    """A clock the test moves by hand, so rescans are ordered without sleeping."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def bump(directory: Path, seconds: int = 10) -> None:
    """Move a directory's mtime on explicitly (file systems with coarse mtimes would miss a fast change)."""
    stat = directory.stat()
    os.utime(directory, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 10**9))


@pytest.fixture
def models(tmp_path) -> Path:
    root = tmp_path / "models"
    write(root / "checkpoints" / "juggernautXL_v9.safetensors", CHECKPOINTS["sdxl"])
    write(root / "checkpoints" / "sdxl" / "juggernautXL_v9.safetensors", CHECKPOINTS["sdxl"], fill=1)
    write(root / "checkpoints" / "v1-5-pruned.safetensors", CHECKPOINTS["sd1"])
    write(root / "checkpoints" / "flux1-schnell.safetensors", CHECKPOINTS["flux-schnell"])
    write(root / "loras" / "style" / "ink.safetensors", lora_pair("lora_te1_text_model_encoder_layers_0_q", 8, 4))
    return root


def catalog(models: Path, tmp_path: Path, **options) -> ModelFiles:
    return ModelFiles.for_models_dir(models, cache_dir=tmp_path / "cache", **options)


# ---- listing and naming ------------------------------------------------------------------------

def test_lists_files_with_names_families_and_no_paths_in_repr(models, tmp_path):
    files = catalog(models, tmp_path)
    listed = {(c.name, c.family, c.status, c.folder_label) for c in files.checkpoints()}
    assert listed == {
        ("juggernautXL_v9.safetensors", "sdxl", "ok", "checkpoints"),
        ("sdxl/juggernautXL_v9.safetensors", "sdxl", "ok", "checkpoints"),
        ("v1-5-pruned.safetensors", "sd1", "ok", "checkpoints"),
        ("flux1-schnell.safetensors", "flux-schnell", "ok", "checkpoints"),
    }
    [lora] = files.loras()
    assert (lora.name, lora.family, lora.rank, lora.status, lora.folder_label) == (
        "style/ink.safetensors", "sdxl", 8, "ok", "loras")
    checkpoint = files.find_checkpoint("v1-5-pruned")
    assert checkpoint.path == (models / "checkpoints" / "v1-5-pruned.safetensors").resolve()
    assert checkpoint.size == checkpoint.path.stat().st_size and checkpoint.title == "v1-5-pruned.safetensors"
    assert str(tmp_path) not in repr(checkpoint) + repr(lora)


def test_names_with_and_without_extension_subfolders_case_and_a1111_forms(models, tmp_path):
    files = catalog(models, tmp_path)
    find = files.find_checkpoint
    assert find("juggernautXL_v9").name == "juggernautXL_v9.safetensors"
    assert find("juggernautXL_v9.safetensors").name == "juggernautXL_v9.safetensors"
    assert find("sdxl/juggernautXL_v9").name == "sdxl/juggernautXL_v9.safetensors"
    assert find("sdxl\\juggernautXL_v9.safetensors").name == "sdxl/juggernautXL_v9.safetensors"  # A1111 on Windows
    assert find("JUGGERNAUTxl_V9").name == "juggernautXL_v9.safetensors"  # any case, when only one file fits
    assert find("sdxl_juggernautXL_v9").name == "sdxl/juggernautXL_v9.safetensors"  # A1111's model_name
    assert find("  v1-5-pruned.safetensors [0123456789]  ").name == "v1-5-pruned.safetensors"  # stale hash: A1111 too
    assert files.find_lora("style/ink").name == "style/ink.safetensors"
    assert files.find_lora("ink").name == "style/ink.safetensors"  # <lora:ink:1> names the file alone
    assert files.find_lora("INK.safetensors").name == "style/ink.safetensors"


def test_title_and_short_hash_once_hashed(models, tmp_path):
    files = catalog(models, tmp_path)
    checkpoint = files.find_checkpoint("sdxl/juggernautXL_v9")
    digest = hashlib.sha256(checkpoint.path.read_bytes()).hexdigest()
    with pytest.raises(ModelUnavailable):
        files.find_checkpoint(digest[:10])  # not hashed yet: hashes are never computed for a lookup by hash
    assert files.checkpoint_hash(checkpoint).shorthash == digest[:10]
    title = f"sdxl/juggernautXL_v9.safetensors [{digest[:10]}]"
    assert files.find_checkpoint("sdxl/juggernautXL_v9").title == title
    assert files.find_checkpoint(title).name == checkpoint.name
    assert files.find_checkpoint(digest[:10]).name == checkpoint.name
    assert files.find_checkpoint(digest.upper()).name == checkpoint.name
    assert files.find_checkpoint(f"renamed.safetensors [{digest[:10]}]").name == checkpoint.name
    assert {c.name: c.title for c in files.checkpoints()}["juggernautXL_v9.safetensors"] == \
        "juggernautXL_v9.safetensors"


def test_same_name_in_two_folders_is_ambiguous_and_a_title_tells_them_apart(models, tmp_path):
    a1111 = tmp_path / "webui" / "models" / "Stable-diffusion"
    write(a1111 / "v1-5-pruned.safetensors", CHECKPOINTS["sd1"], fill=2)
    files = catalog(models, tmp_path, extra_checkpoint_dirs=[a1111])
    with pytest.raises(InvalidRequest) as caught:
        files.find_checkpoint("v1-5-pruned", "sd_model_checkpoint")
    error = caught.value
    assert (error.status, error.field) == (422, "sd_model_checkpoint")
    assert error.message == ("Checkpoint 'v1-5-pruned' matches 2 files: v1-5-pruned.safetensors in checkpoints; "
                             "v1-5-pruned.safetensors in Stable-diffusion")
    second = next(c for c in files.checkpoints() if c.folder_label == "Stable-diffusion")
    short = files.checkpoint_hash(second).shorthash
    assert files.find_checkpoint(f"v1-5-pruned.safetensors [{short}]").path == second.path
    with pytest.raises(InvalidRequest) as caught:
        files.find_checkpoint("v1-5-pruned")
    assert f"v1-5-pruned.safetensors in Stable-diffusion [{short}]" in caught.value.message
    assert str(tmp_path) not in caught.value.message + (caught.value.hint or "")


def test_same_name_in_any_case_is_ambiguous_but_the_exact_case_is_not(models, tmp_path):
    write(models / "checkpoints" / "Model.safetensors", CHECKPOINTS["sd1"])
    write(models / "checkpoints" / "model.safetensors", CHECKPOINTS["sd1"], fill=1)
    files = catalog(models, tmp_path)
    assert files.find_checkpoint("Model").name == "Model.safetensors"
    with pytest.raises(InvalidRequest) as caught:
        files.find_checkpoint("MODEL")
    assert caught.value.message == ("Checkpoint 'MODEL' matches 2 files: Model.safetensors in checkpoints; "
                                    "model.safetensors in checkpoints")


def test_a_hash_shared_by_two_files_is_ambiguous(models, tmp_path):
    copy = models / "checkpoints" / "copy-of-v1-5.safetensors"
    copy.write_bytes((models / "checkpoints" / "v1-5-pruned.safetensors").read_bytes())
    files = catalog(models, tmp_path)
    short = files.checkpoint_hash(files.find_checkpoint("copy-of-v1-5")).shorthash
    assert files.checkpoint_hash(files.find_checkpoint("v1-5-pruned")).shorthash == short
    with pytest.raises(InvalidRequest) as caught:
        files.find_checkpoint(short[:8], "Model")
    assert caught.value.message == (f"Checkpoint '{short[:8]}' matches 2 files: copy-of-v1-5.safetensors in "
                                    f"checkpoints [{short}]; v1-5-pruned.safetensors in checkpoints [{short}]")


def test_unknown_name_is_404_with_close_matches(models, tmp_path):
    files = catalog(models, tmp_path)
    with pytest.raises(ModelUnavailable) as caught:
        files.find_checkpoint("jugernaut_v9", "Model")
    error = caught.value
    assert (error.status, error.field, error.exit_code) == (404, "Model", 3)
    assert error.message == "Checkpoint 'jugernaut_v9' was not found"
    assert error.hint == "Did you mean 'juggernautXL_v9.safetensors' or 'sdxl/juggernautXL_v9.safetensors'?"
    with pytest.raises(ModelUnavailable) as caught:
        files.find_lora("zzzz", "prompt")
    assert caught.value.hint == ("No LoRA file has that name (1 listed); a LoRA is named by its path inside its "
                                 "folder, with or without .safetensors.")


def test_folders_from_a1111_and_comfyui_layouts(tmp_path):
    webui = tmp_path / "webui" / "models"
    comfy = tmp_path / "ComfyUI" / "models"
    write(webui / "Stable-diffusion" / "a.safetensors", CHECKPOINTS["sd1"])
    write(webui / "Lora" / "b.safetensors", lora_pair("lora_unet_x", 2, 768))
    write(comfy / "checkpoints" / "c.safetensors", CHECKPOINTS["sd3"])
    write(comfy / "loras" / "d.safetensors", lora_pair("lora_unet_y", 2, 768))
    files = ModelFiles([webui / "Stable-diffusion", comfy / "checkpoints", tmp_path / "missing"],
                       [webui / "Lora", comfy / "loras"], tmp_path / "cache")
    assert [(c.name, c.folder_label) for c in files.checkpoints()] == [
        ("a.safetensors", "Stable-diffusion"), ("c.safetensors", "checkpoints")]
    assert [(lo.name, lo.folder_label) for lo in files.loras()] == [
        ("b.safetensors", "Lora"), ("d.safetensors", "loras")]


def test_natural_order_vae_files_and_other_files_left_out(models, tmp_path):
    checkpoints = models / "checkpoints"
    for name in ("m10.safetensors", "m9.safetensors", "sdxl_vae.vae.safetensors", ".hidden.safetensors"):
        write(checkpoints / name, CHECKPOINTS["sd1"])
    (checkpoints / "notes.txt").write_text("x")
    (checkpoints / "preview.png").write_bytes(b"x")
    names = [c.name for c in catalog(models, tmp_path).checkpoints()]
    assert names == ["flux1-schnell.safetensors", "juggernautXL_v9.safetensors", "m9.safetensors", "m10.safetensors",
                     "sdxl/juggernautXL_v9.safetensors", "v1-5-pruned.safetensors"]


# ---- pickles, broken files, unrecognised layouts -----------------------------------------------

class Detonator:
    """Unpickling this makes a directory: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickles_are_listed_as_refused_and_never_opened(models, tmp_path):
    marker = tmp_path / "unpickled"
    for folder, name in (("checkpoints", "old.ckpt"), ("checkpoints", "old.safetensors"), ("loras", "legacy.pt"),
                         ("loras", "pytorch_lora_weights.bin"), ("checkpoints", "x.pth")):
        path = models / folder / name
        if name == "old.safetensors":
            write(path, CHECKPOINTS["sd1"])
            continue
        path.write_bytes(pickle.dumps(Detonator(marker)))
        path.chmod(0)  # unreadable too (root reads anyway: the audit hook is the proof)
    (models / "checkpoints" / "disguised.safetensors").symlink_to(models / "checkpoints" / "old.ckpt")
    with opened_files() as seen:
        files = catalog(models, tmp_path)
        listed = {c.name: c for c in files.checkpoints()}
        loras = {lo.name: lo for lo in files.loras()}
        with pytest.raises(ModelUnavailable) as caught:
            files.find_checkpoint("x", "Model")
        assert files.find_checkpoint("old").name == "old.safetensors"  # beside a pickle of the same name
        refused = files.find_checkpoint("old.ckpt", usable=False)
    assert not any(path.endswith((".ckpt", ".pt", ".bin", ".pth")) for path in seen)
    assert not marker.exists()
    size = (models / "checkpoints" / "old.ckpt").lstat().st_size
    assert (refused.status, refused.family, refused.size) == ("refused", None, size)
    assert listed["x.pth"].status == "refused" and loras["legacy.pt"].status == "refused"
    assert listed["disguised.safetensors"].status == "refused"  # a link's target counts, not only its name
    assert loras["pytorch_lora_weights.bin"].status == "refused"
    reason = listed["old.ckpt"].reason
    assert reason.startswith("old.ckpt is a pickle file; unpickling can run any code, so PICO never opens")
    assert "safetensors.torch" in reason and "'old.safetensors'" in reason and "ComfyUI" in reason
    error = caught.value
    assert (error.status, error.field) == (422, "Model")
    assert error.message.startswith("Checkpoint x.pth cannot be used: x.pth is a pickle file")
    for file in (refused, listed["disguised.safetensors"]):
        with pytest.raises(ValueError):
            files.checkpoint_hash(file)


def test_broken_and_unrecognised_files_are_listed_with_a_reason(models, tmp_path):
    (models / "checkpoints" / "half-downloaded.safetensors").write_bytes(struct.pack("<Q", 10_000) + b"{")
    (models / "checkpoints" / "not-json.safetensors").write_bytes(struct.pack("<Q", 4) + b"\xff\xfe\x00\x01")
    write(models / "checkpoints" / "a-lora.safetensors", lora_pair("lora_unet_x", 4, 768))
    write(models / "loras" / "a-checkpoint.safetensors", CHECKPOINTS["sd1"])
    files = catalog(models, tmp_path)
    listed = {c.name: (c.status, c.reason) for c in files.checkpoints()}
    assert listed["half-downloaded.safetensors"] == ("broken", ("the header claims 10,000 bytes but the file has only "
                                                     "1 after the length: truncated, or not a safetensors file"))
    assert listed["not-json.safetensors"] == ("broken", "the header is not valid JSON: not a safetensors file")
    assert listed["a-lora.safetensors"] == ("unrecognised", "a LoRA, not a checkpoint: put it in a LoRA folder")
    assert {lo.name: lo.reason for lo in files.loras()}["a-checkpoint.safetensors"] == \
        "a whole checkpoint, not a LoRA: put it in a checkpoint folder"
    with pytest.raises(ModelUnavailable) as caught:
        files.find_checkpoint("half-downloaded", "Model")
    assert (caught.value.status, caught.value.hint) == (
        422, "Replace the file (download it again); the others in the list still work.")
    assert files.find_checkpoint("a-lora", usable=False).status == "unrecognised"


def test_yaml_beside_a_checkpoint_sets_v_prediction_as_a1111_reads_it(models, tmp_path):
    write(models / "checkpoints" / "v2-768.safetensors", CHECKPOINTS["sd2"])
    (models / "checkpoints" / "v2-768.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    write(models / "checkpoints" / "v2-512.safetensors", CHECKPOINTS["sd2"])
    write(models / "checkpoints" / "v2-bad.safetensors", CHECKPOINTS["sd2"])
    (models / "checkpoints" / "v2-bad.yaml").write_text("model: [unclosed\n")
    files = catalog(models, tmp_path)
    assert files.find_checkpoint("v2-768").prediction == "v"
    assert files.find_checkpoint("v2-512").prediction is None
    assert files.find_checkpoint("v2-bad").prediction is None
    (models / "checkpoints" / "v2-512.yaml").write_text("model:\n  params:\n    parameterization: eps\n")
    bump(models / "checkpoints")
    files.refresh()
    assert files.find_checkpoint("v2-512").prediction == "epsilon"


# ---- names never leave their folder ------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "../outside", "/etc/passwd", "a/../../b", "..\\outside",
                                  "sdxl\\..\\..\\outside", "C:\\Windows\\x", "\\\\server\\share\\x",
                                  "x\x00.safetensors", "sdxl//juggernautXL_v9", "./v1-5-pruned", "", "   ", "a" * 1025])
def test_names_that_leave_the_folder_are_refused(models, tmp_path, name):
    write(tmp_path / "outside.safetensors", CHECKPOINTS["sd1"])
    files = catalog(models, tmp_path)
    with pytest.raises(InvalidRequest) as caught:
        files.find_checkpoint(name, "Model")
    assert (caught.value.status, caught.value.field) == (422, "Model")
    assert str(tmp_path) not in caught.value.message
    with pytest.raises(InvalidRequest):
        files.find_lora(name, "Lora")


def test_non_string_names_are_refused(models, tmp_path):
    with pytest.raises(InvalidRequest) as caught:
        catalog(models, tmp_path).find_checkpoint(["x"], "sd_model_checkpoint")
    assert caught.value.message == "sd_model_checkpoint must be a string naming a checkpoint"


def test_symlinks_out_of_the_folder_are_ignored_inside_ones_listed(models, tmp_path):
    outside = write(tmp_path / "elsewhere" / "secret.safetensors", CHECKPOINTS["sd1"])
    checkpoints = models / "checkpoints"
    (checkpoints / "secret.safetensors").symlink_to(outside)
    (checkpoints / "elsewhere").symlink_to(outside.parent, target_is_directory=True)
    (checkpoints / "dangling.safetensors").symlink_to(tmp_path / "nothing.safetensors")
    (checkpoints / "sdxl" / "loop").symlink_to(checkpoints, target_is_directory=True)
    (checkpoints / "loop-a.safetensors").symlink_to(checkpoints / "loop-b.safetensors")
    (checkpoints / "loop-b.safetensors").symlink_to(checkpoints / "loop-a.safetensors")
    (checkpoints / "alias.safetensors").symlink_to(checkpoints / "sdxl" / "juggernautXL_v9.safetensors")
    (checkpoints / "linked-dir").symlink_to(checkpoints / "sdxl", target_is_directory=True)
    files = catalog(models, tmp_path)
    names = {c.name for c in files.checkpoints()}
    assert not any("secret" in name or "elsewhere" in name or "dangling" in name or "loop" in name for name in names)
    alias = files.find_checkpoint("alias")
    assert alias.path == (checkpoints / "sdxl" / "juggernautXL_v9.safetensors").resolve()
    assert files.find_checkpoint("linked-dir/juggernautXL_v9").path == alias.path
    for name in ("secret", "elsewhere/secret", "../elsewhere/secret"):
        with pytest.raises((ModelUnavailable, InvalidRequest)):
            files.find_checkpoint(name)


# ---- rescans -----------------------------------------------------------------------------------

def test_new_changed_and_removed_files_appear_without_a_restart(models, tmp_path):
    clock = Clock()
    files = catalog(models, tmp_path, clock=clock)
    checkpoints = models / "checkpoints"
    assert len(files.checkpoints()) == 4 and files.scans == 1
    write(checkpoints / "new.safetensors", CHECKPOINTS["sd1"])
    bump(checkpoints)
    with pytest.raises(ModelUnavailable):
        files.find_checkpoint("new")  # checked less than a second ago: the listing is not looked at again yet
    clock.now += 1.0
    assert files.find_checkpoint("new").family == "sd1"
    write(checkpoints / "deep" / "er" / "newer.safetensors", CHECKPOINTS["sd3"])
    bump(checkpoints)
    clock.now += 1.0
    assert files.find_checkpoint("deep/er/newer").family == "sd3"
    write(checkpoints / "deep" / "er" / "newest.safetensors", CHECKPOINTS["sd1"])
    bump(checkpoints / "deep" / "er")  # only the innermost folder changed
    clock.now += 1.0
    assert files.find_checkpoint("deep/er/newest").name == "deep/er/newest.safetensors"
    (checkpoints / "new.safetensors").unlink()
    bump(checkpoints)
    clock.now += 1.0
    with pytest.raises(ModelUnavailable):
        files.find_checkpoint("new")
    scans = files.scans
    clock.now += 5.0
    files.checkpoints()
    assert files.scans == scans  # nothing changed: no rescan
    write(models / "loras" / "fresh.safetensors", lora_pair("lora_unet_mid_block_attentions_0_transformer_blocks_0"
                                                            "_attn2_to_k", 2, 1024))
    files.refresh()  # an explicit refresh does not wait for the clock
    assert files.find_lora("fresh").family == "sd2"


def test_a_copy_that_finishes_after_the_scan_is_seen(models, tmp_path):
    """A big file being copied in is listed as truncated; when the copy ends its folder's mtime stays put."""
    clock = Clock()
    files = catalog(models, tmp_path, clock=clock)
    source = write(tmp_path / "source.safetensors", CHECKPOINTS["sd1"]).read_bytes()
    target = models / "checkpoints" / "copying.safetensors"
    target.write_bytes(source[: len(source) // 2])
    bump(models / "checkpoints")
    clock.now += 1.0
    assert files.find_checkpoint("copying", usable=False).status == "broken"
    folder_mtime = (models / "checkpoints").stat().st_mtime_ns
    with open(target, "ab") as out:
        out.write(source[len(source) // 2:])
    os.utime(models / "checkpoints", ns=(folder_mtime, folder_mtime))
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    clock.now += 1.0
    assert files.find_checkpoint("copying").family == "sd1"


def test_a_folder_created_later_is_picked_up(tmp_path):
    clock = Clock()
    files = ModelFiles.for_models_dir(tmp_path / "models", tmp_path / "cache", clock=clock)
    assert files.checkpoints() == [] and files.loras() == []
    write(tmp_path / "models" / "loras" / "a.safetensors", lora_pair("lora_unet_x", 2, 768))
    clock.now += 1.0
    assert [lo.name for lo in files.loras()] == ["a.safetensors"]


def test_headers_are_read_once_per_file_version(models, tmp_path):
    files = catalog(models, tmp_path)
    files.checkpoints()
    another = write(models / "checkpoints" / "another.safetensors", CHECKPOINTS["sd1"])
    with opened_files() as seen:
        files.refresh()
        files.refresh()
    assert seen == [str(another.resolve())]


# ---- hashes ------------------------------------------------------------------------------------

def test_hashes_are_a1111s(models, tmp_path):
    files = catalog(models, tmp_path)
    checkpoint = files.find_checkpoint("v1-5-pruned")
    data = checkpoint.path.read_bytes()
    assert files.checkpoint_hash(checkpoint).hash == hashlib.sha256(data).hexdigest()
    lora = files.find_lora("ink")
    data = lora.path.read_bytes()
    after_header = data[8 + struct.unpack("<Q", data[:8])[0]:]
    expected = hashlib.sha256(after_header).hexdigest()
    assert files.lora_hash(lora).hash == expected and files.lora_hash(lora).shorthash == expected[:12]
    assert files.find_lora(expected[:12]).name == "style/ink.safetensors"


def test_lora_hash_stated_in_metadata_is_used_without_reading_the_file(models, tmp_path):
    stated = "ab" * 32
    write(models / "loras" / "kohya.safetensors", lora_pair("lora_unet_x", 2, 768), {"sshs_model_hash": stated})
    files = catalog(models, tmp_path)
    lora = files.find_lora("kohya")
    with opened_files() as seen:
        assert files.lora_hash(lora).shorthash == stated[:12]
        assert files.known_lora_hash(lora).hash == stated
        assert files.find_lora(stated[:12]).name == "kohya.safetensors"
    assert seen == []
    assert files.lora_metadata(lora) == {"sshs_model_hash": stated}


def test_hash_cache_survives_a_restart_and_follows_changes(models, tmp_path):
    first = catalog(models, tmp_path)
    checkpoint = first.find_checkpoint("v1-5-pruned")
    original = first.checkpoint_hash(checkpoint).hash
    assert json.loads((tmp_path / "cache" / "file-hashes.json").read_text())["entries"][
        f"sha256:{checkpoint.path}"]["hash"] == original
    # Change the tensor bytes but keep size and mtime: a cache keyed by (path, size, mtime) cannot see it,
    # so an answer of the old hash proves the second catalog did not read the file.
    stat = checkpoint.path.stat()
    data = bytearray(checkpoint.path.read_bytes())
    data[-1] ^= 0xFF
    checkpoint.path.write_bytes(data)
    os.utime(checkpoint.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = catalog(models, tmp_path)
    again = second.find_checkpoint("v1-5-pruned")
    assert again.title == f"v1-5-pruned.safetensors [{original[:10]}]"
    assert second.known_checkpoint_hash(again).hash == original
    assert second.known_checkpoint_hash(second.find_checkpoint("juggernautXL_v9")) is None
    with opened_files() as seen:
        assert second.checkpoint_hash(again).hash == original != hashlib.sha256(data).hexdigest()
    assert str(checkpoint.path) not in seen
    os.utime(checkpoint.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # now it looks changed
    third = catalog(models, tmp_path)
    assert third.checkpoint_hash(third.find_checkpoint("v1-5-pruned")).hash == hashlib.sha256(data).hexdigest()


def test_a_corrupt_hash_cache_is_ignored(models, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "file-hashes.json").write_text("{not json")
    files = catalog(models, tmp_path)
    checkpoint = files.find_checkpoint("v1-5-pruned")
    assert files.checkpoint_hash(checkpoint).hash == hashlib.sha256(checkpoint.path.read_bytes()).hexdigest()


# ---- threads -----------------------------------------------------------------------------------

def test_many_threads_hash_a_file_once(models, tmp_path):
    write(models / "checkpoints" / "big.safetensors", {**CHECKPOINTS["sd1"], "pad": (4096, 2048)})  # 16 MiB
    files = catalog(models, tmp_path)
    checkpoint = files.find_checkpoint("big")
    start = threading.Barrier(8)
    results = []

    def work():
        start.wait()
        results.append(files.checkpoint_hash(checkpoint).hash)

    with opened_files() as seen:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert seen.count(str(checkpoint.path)) == 1


def test_lookups_from_many_threads_while_files_are_added(models, tmp_path):
    files = catalog(models, tmp_path, recheck_seconds=0.0)
    errors, stop = [], threading.Event()

    def reader():
        try:
            while not stop.is_set():
                assert files.find_checkpoint("v1-5-pruned").family == "sd1"
                assert len(files.checkpoints()) >= 4
                files.loras()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for n in range(30):
        write(models / "checkpoints" / "added" / f"m{n}.safetensors", CHECKPOINTS["sd1"])
        bump(models / "checkpoints" / "added", n + 1)
        if n % 5 == 0:
            files.refresh()
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {f"added/m{n}.safetensors" for n in range(30)} <= {c.name for c in files.checkpoints()}


# ---- no torch ----------------------------------------------------------------------------------

def test_the_catalog_imports_no_torch():
    code = ("import sys, pico.catalog.files, pico.catalog.families, pico.catalog.models, pico.catalog.pipelines, pico.catalog.resolver, pico.catalog.samplers; "
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'safetensors', 'pico.pipelines') if m in sys.modules]; "
            "assert not heavy, heavy")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
