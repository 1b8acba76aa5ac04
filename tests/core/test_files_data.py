"""The files reference pipeline's pieces without training: the generator, decoding, rejects, augmentation,
the in-graph normalisation, the CNN's activation map and the heat-map side outputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from verticals.errors import UserError
from verticals.spec import Batch, ScoringContext
from verticals.testing.files import (
    CLASSES,
    ImagePreprocessor,
    ShapesPipeline,
    cnn_factory,
    decode_image,
    files_schema,
    make_images,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    root = tmp_path_factory.mktemp("images")
    return root, make_images(root, 60, seed=3, corrupt=2)


def test_generator_varies_sizes_modes_and_labels(folder) -> None:
    root, frame = folder
    assert frame.columns == ["path", "label"] and frame.height == 60
    assert set(frame["label"].to_list()) == set(CLASSES)
    sizes, modes = set(), set()
    for path in frame["path"].to_list()[:-2]:
        with Image.open(path) as img:
            sizes.add(img.size)
            modes.add(img.mode)
        assert Path(path).parent == root and Path(path).name.startswith("img-")  # no label in the name
    assert modes == {"L", "RGB"} and len(sizes) > 20
    for path in frame["path"].to_list()[-2:]:
        with pytest.raises(OSError):
            decode_image(path, 32)


def test_generator_is_deterministic_reuses_its_folder_and_refuses_a_foreign_one(folder, tmp_path: Path) -> None:
    root, frame = folder
    again = make_images(tmp_path / "again", 60, seed=3, corrupt=2)
    first = [Path(p).read_bytes() for p in frame["path"]]
    assert [Path(p).read_bytes() for p in again["path"]] == first
    assert again["label"].to_list() == frame["label"].to_list()
    stamp = [Path(p).stat().st_mtime_ns for p in frame["path"]]
    assert make_images(root, 60, seed=3, corrupt=2).equals(frame)  # reused, not rewritten
    assert [Path(p).stat().st_mtime_ns for p in frame["path"]] == stamp
    with pytest.raises(UserError, match="not empty"):
        make_images(root, 61, seed=3)
    with pytest.raises(UserError, match="cannot generate 0 images"):
        make_images(tmp_path / "none", 0)
    with pytest.raises(UserError, match="cannot generate 5 images with 6 corrupt"):
        make_images(tmp_path / "none", 5, corrupt=6)


def test_the_planted_shapes_differ_where_a_model_can_see_them(folder) -> None:
    """A disc leaves the corners of its bounding box dark, a square fills them: count bright pixels
    against the bright region's bounding box."""
    _, frame = folder
    fill = {c: [] for c in CLASSES}
    for path, label in frame.head(58).iter_rows():
        pixels, _ = decode_image(path, 64)
        bright = pixels.max(axis=0) > 150
        ys, xs = np.nonzero(bright)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        fill[label].append(bright.sum() / box)
    assert min(fill["square"]) > 0.9 > max(fill["disc"])


def test_decoding_letterboxes_any_mode_deterministically(tmp_path: Path) -> None:
    wide = np.zeros((10, 40), dtype=np.uint8)
    wide[:, :] = 200
    Image.fromarray(wide, "L").save(tmp_path / "wide.png")
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "red.png")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "red.jpg", quality=95)

    pixels, mode = decode_image(str(tmp_path / "wide.png"), 32)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.uint8 and mode == "L"
    assert (pixels[0] == pixels[1]).all() and (pixels[1] == pixels[2]).all()  # gray replicated
    assert pixels[:, 16, :].min() == 200  # the middle rows are the image, scaled to the full width ...
    assert pixels[:, :10, :].max() == 0 and pixels[:, -10:, :].max() == 0  # ... padded above and below
    assert np.array_equal(pixels, decode_image(str(tmp_path / "wide.png"), 32)[0])
    red, mode = decode_image(str(tmp_path / "red.png"), 8)
    assert mode == "RGBA" and red[0].min() == 255 and red[1:].max() == 0
    jpeg, mode = decode_image(str(tmp_path / "red.jpg"), 8)
    assert mode == "RGB" and jpeg[0].min() > 240


def test_undecodable_and_missing_files_are_rejected_with_path_and_reason(folder, tmp_path: Path) -> None:
    _, frame = folder
    missing = str(tmp_path / "gone.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    rows = pl.concat([frame.head(3), frame.tail(2),
                      pl.DataFrame({"path": [missing, str(text)], "label": ["disc", "square"]})])
    pre = ImagePreprocessor(files_schema(), size=16)
    batch = pre.transform(rows, with_target=True)
    assert len(batch) == 3 and batch.inputs["image"].shape == (3, 3, 16, 16)
    assert batch.ids["path"].to_list() == rows["path"].to_list()[:3]
    assert batch.target.tolist() == [float(v == "disc") for v in rows["label"].to_list()[:3]]
    assert batch.aux["mode"].len() == 3
    rejects = batch.rejects
    assert rejects["_row"].to_list() == [3, 4, 5, 6]
    assert rejects["path"].to_list() == rows["path"].to_list()[3:]
    reasons = rejects["_reason"].to_list()
    assert all(r.startswith(f"cannot decode image file {p}: ") for r, p in zip(reasons[:2], rows["path"][3:5]))
    assert reasons[2] == f"image file {missing} does not exist"
    assert reasons[3].startswith(f"cannot decode image file {text}: ") and "\n" not in "".join(reasons)
    # Scoring: no target; a frame with nothing decodable gives an empty batch and only rejects.
    only_bad = pre.transform(rows.tail(2).drop("label"), with_target=False)
    assert len(only_bad) == 0 and only_bad.target is None and only_bad.rejects.height == 2


def test_fit_learns_channel_statistics_and_they_round_trip(folder) -> None:
    _, frame = folder
    pre = ImagePreprocessor(files_schema(), size=16)
    pre.fit(frame)  # the two corrupt files are skipped
    assert all(0.05 < m < 0.6 for m in pre.mean) and all(0.05 < s < 0.5 for s in pre.std)
    other = ImagePreprocessor(files_schema(), size=99)
    other.load_state(pre.state())
    assert other.size == 16 and other.mean == pre.mean and other.std == pre.std
    assert other.signature()["image"].dtype == "uint8"
    assert other.signature()["image"].shape == (-1, 3, 16, 16)


def test_normalisation_runs_in_the_graph_on_uint8_pixels(folder) -> None:
    import torch

    _, frame = folder
    pre = ImagePreprocessor(files_schema(), size=16)
    pre.fit(frame)
    batch = pre.transform(frame.head(8), with_target=False)
    out = pre.graph_module()(image=torch.from_numpy(batch.inputs["image"]))["image"]
    expected = (batch.inputs["image"] / 255.0 - np.array(pre.mean)[None, :, None, None]) \
        / np.array(pre.std)[None, :, None, None]
    assert out.dtype == torch.float32 and np.allclose(out.numpy(), expected, atol=1e-5)


def test_augmentation_is_seeded_flips_only_and_leaves_the_batch_alone(folder) -> None:
    _, frame = folder
    pre = ImagePreprocessor(files_schema(), size=16)
    batch = pre.transform(frame.head(40), with_target=True)
    before = batch.inputs["image"].copy()
    one = pre.augment(batch, np.random.default_rng([1, 2, 3]))
    two = pre.augment(batch, np.random.default_rng([1, 2, 3]))
    other = pre.augment(batch, np.random.default_rng([1, 2, 4]))
    assert np.array_equal(batch.inputs["image"], before)  # the input batch is not modified
    assert np.array_equal(one.inputs["image"], two.inputs["image"])
    assert not np.array_equal(one.inputs["image"], other.inputs["image"])
    changed = 0
    for x, y in zip(before, one.inputs["image"]):
        flips = [x, x[..., ::-1], x[..., ::-1, :], x[..., ::-1, ::-1]]
        assert any(np.array_equal(y, f) for f in flips)
        changed += not np.array_equal(x, y)
    assert 15 < changed < 40
    assert one.ids.equals(batch.ids) and np.array_equal(one.target, batch.target)


def test_activation_map_averages_to_the_logit() -> None:
    import torch

    torch.manual_seed(0)
    model = cnn_factory({"channels": 3, "size": 16}).eval()
    with torch.no_grad():
        logits, cam = model(image=torch.randn(5, 3, 16, 16))
    assert logits.shape == (5,) and cam.shape == (5, 4, 4)
    assert torch.allclose(cam.mean(dim=(1, 2)), logits, atol=1e-5)


def test_postprocess_writes_a_heat_map_per_image_only_when_scoring_into_a_folder(tmp_path: Path) -> None:
    pipe = ShapesPipeline(size=16)
    batch = Batch(ids=pl.DataFrame({"path": ["/a/x.png", "/b/x.png", "/a/y.png"]}), inputs={})
    cam = np.stack([np.full((4, 4), -3.0), np.full((4, 4), 3.0), np.linspace(-2, 2, 16).reshape(4, 4)])
    outputs = {"logits": np.array([-3.0, 3.0, 0.0], dtype=np.float32), "cam": cam.astype(np.float32)}

    plain = pipe.postprocess(outputs, batch, ScoringContext({"heatmap_size": 16}))
    assert plain["label"].to_list() == ["square", "disc", "disc"]
    assert plain["heatmap"].null_count() == 3

    context = ScoringContext({"heatmap_size": 16}).with_part(tmp_path / "part-00003", "part-00003")
    out = pipe.postprocess(outputs, batch, context)
    paths = out["heatmap"].to_list()
    assert len(set(paths)) == 3 and all(p.startswith("part-00003/heatmap-") for p in paths)  # same name, other folder
    images = [Image.open(io.BytesIO((tmp_path / p).read_bytes())) for p in paths]
    assert all(img.size == (16, 16) and img.mode == "L" for img in images)
    dark, bright, ramp = (np.asarray(img) for img in images)
    assert dark.max() < 15 and bright.min() > 240 and ramp[0, 0] < ramp[-1, -1]
    again = pipe.postprocess(outputs, batch, context)
    assert again.equals(out)  # deterministic names and content


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    Image.fromarray(np.zeros((40, 50), dtype=np.uint8), "L").save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    pre = ImagePreprocessor(files_schema(), size=8)
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's own warning at open
        batch = pre.transform(pl.DataFrame({"path": [str(tmp_path / "big.png")]}), with_target=False)
    assert len(batch) == 0
    assert batch.rejects["_reason"][0] == (f"cannot decode image file {tmp_path / 'big.png'}: "
                                           "50×40 pixels is more than Pillow's limit of 1000")
