"""The photo-pipeline benchmark runs end to end on a tiny configuration (nothing about its timings is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# benchmarks/ is a folder of the repository, not part of the installed package: import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import pipeline


def test_tiny_run_writes_markdown_and_json(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    assert pipeline.main(["--tiny", "--work", str(work), "--out", str(out), "--name", "smoke"]) == 0
    data = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    assert data["images"] == 24 and data["train_images"] > 0
    for table in ("build_images_per_s", "build_images_per_cpu_s"):
        assert set(data[table]) == {"minialex", "minialex_1_thread", "pil_loop"} and min(data[table].values()) > 0
    assert min(data["epoch_images_per_s"].values()) > 0
    text = (out / "smoke.md").read_text(encoding="utf-8")
    assert "plain PIL loop" in text and "epoch from the cache" in text and "minus the mean image" in text


def test_the_plain_loop_is_torchvisions_resize_and_centre_crop(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    # A 300×200 image: Resize(256) makes it 384×256, CenterCrop(256) keeps columns 64..319.
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(tmp_path / "flat.png")
    seen = []
    original = Image.Image.crop
    monkeypatch.setattr(Image.Image, "crop", lambda self, box: seen.append((self.size, box)) or original(self, box))
    pipeline.plain_pil_loop([tmp_path / "flat.png"])
    assert seen == [((384, 256), (64, 0, 320, 256))]


def test_tiny_trainer_epoch_writes_markdown_and_json(tmp_path):
    """``benchmarks.pipeline_epoch``: the trainer's epoch on photos with its prefetcher wait and peak memory."""
    from benchmarks import pipeline_epoch

    work, out = tmp_path / "work", tmp_path / "out"
    assert pipeline_epoch.main(["--tiny", "--work", str(work), "--out", str(out), "--name", "epoch"]) == 0
    data = json.loads((out / "epoch.json").read_text(encoding="utf-8"))
    assert data["files"] == 32 and data["train_images"] + data["val_images"] == 24 and data["test_images"] == 8
    assert 0 <= data["data_wait_seconds"] <= data["train_seconds"] and data["train_images_per_s"] > 0
    assert min(data["pipeline_images_per_s"].values()) > 0 and data["peak_mb"] >= data["rss_after_cache_open_mb"] > 0
    text = (out / "epoch.md").read_text(encoding="utf-8")
    assert "blocked waiting for the prefetcher" in text and "peak RSS" in text
