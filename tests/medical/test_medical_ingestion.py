"""Reading images: DICOM rules (rescale, windowing, MONOCHROME1, multi-frame, codecs), PNG/JPEG/NumPy,
every bad input refused with a reason, and the whole pydicom-data corpus accounted for."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_support import corpus_files, write_dicom
from PIL import Image
from verticals_medical.imaging import PRESETS, ImageRejected, decode


def _ramp(h: int = 32, w: int = 32) -> np.ndarray:
    return np.tile(np.linspace(-1000, 1000, w), (h, 1)).astype(np.int16)


def test_rescale_and_window_from_tags_and_presets(tmp_path):
    # Stored values 0..2000 with intercept -1000 are HU -1000..1000; the file's window 0/400 maps HU -200..200.
    stored = (_ramp() + 1000).astype(np.int16)
    path = write_dicom(tmp_path / "ct.dcm", stored, intercept=-1000.0, window=(0, 400))
    tagged = decode(str(path), 32).pixels.astype(int)
    # Columns left of -200 HU are black, right of +200 HU white, the middle column mid-gray.
    assert tagged[16, 0] == 0 and tagged[16, 31] == 255 and 100 < tagged[16, 16] < 155
    lung = decode(str(path), 32, window="lung").pixels.astype(int)
    low, high = PRESETS["lung"][0] - PRESETS["lung"][1] / 2, PRESETS["lung"][0] + PRESETS["lung"][1] / 2
    hu = np.linspace(-1000, 1000, 32)
    expected = np.clip((hu - low) / (high - low), 0, 1) * 255
    assert np.abs(lung[16] - expected).max() < 12  # the lung window is wider: a ramp, not a step
    assert not np.array_equal(tagged, lung)


def test_monochrome1_is_inverted_and_without_window_percentiles_apply(tmp_path):
    ramp = (_ramp() + 1000).astype(np.int16)
    m2 = decode(str(write_dicom(tmp_path / "m2.dcm", ramp)), 32).pixels.astype(int)
    m1 = decode(str(write_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1")), 32).pixels.astype(int)
    assert m2[16, 0] < 10 and m2[16, 31] > 245
    assert np.abs(m1 - (255 - m2)).max() <= 1


def test_multi_frame_uses_the_middle_frame(tmp_path):
    frames = np.stack([np.full((16, 16), v, dtype=np.int16) for v in (0, 100, 1000, 50)])
    frames[:, :, :8] = 0  # a constant frame has no range; half of each frame is 0
    path = write_dicom(tmp_path / "mf.dcm", frames, frames=4, window=(500, 1000))
    decoded = decode(str(path), 16)
    assert decoded.frames == 4
    assert decoded.pixels[8, 12] == 255  # frame 2 (value 1000) is the middle one of four (4 // 2)


def test_png_jpeg_gray_and_rgb_any_size_and_numpy(tmp_path):
    rng = np.random.default_rng(0)
    small = tmp_path / "thumb.png"
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(small)
    rgb = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8), "RGB").save(rgb)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.tile(np.arange(0, 60000, 1000, dtype=np.uint16), (60, 1))).save(sixteen)
    arr = tmp_path / "arr.npy"
    np.save(arr, np.linspace(-5, 5, 40 * 30).reshape(40, 30).astype(np.float32))
    for path in (small, rgb, sixteen, arr):
        decoded = decode(str(path), 48)
        assert decoded.pixels.shape == (48, 48) and decoded.pixels.dtype == np.uint8
    # Deterministic: the same file always gives the same pixels.
    assert np.array_equal(decode(str(rgb), 48).pixels, decode(str(rgb), 48).pixels)
    assert decode(str(sixteen), 60).pixels[30].max() == 255
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageRejected, match="not a plain NumPy array"):
        decode(str(pickled), 32)


@pytest.mark.parametrize("case", ["corrupt", "truncated", "no_pixels", "sr", "seg", "huge_dicom",
                                  "huge_png", "text_png", "empty", "bad_photometric"])
def test_bad_files_are_refused_with_a_reason(tmp_path, case):
    from pydicom.uid import UID

    path = tmp_path / f"{case}.dcm"
    expect = {
        "corrupt": "corrupt", "truncated": "corrupt", "no_pixels": "without pixel data",
        "sr": "structured report", "seg": "segmentation",
        "huge_dicom": "more than the limit", "huge_png": "more than the limit", "text_png": "not an image",
        "empty": "empty file", "bad_photometric": "unsupported photometric interpretation HSV",
    }[case]
    if case == "corrupt":
        path.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 10)
    elif case == "truncated":
        full = write_dicom(tmp_path / "full.dcm", _ramp())
        path.write_bytes(full.read_bytes()[:400])
    elif case == "no_pixels":
        write_dicom(path, None, modality="OT")
    elif case == "sr":
        write_dicom(path, None, modality="SR", sop_class=UID("1.2.840.10008.5.1.4.1.1.88.22"))
    elif case == "seg":
        write_dicom(path, _ramp(), modality="SEG", sop_class=UID("1.2.840.10008.5.1.4.1.1.66.4"))
    elif case == "huge_dicom":  # the header claims 100k × 100k pixels: refused before any decoding
        write_dicom(path, _ramp(), rows=65535, cols=65535)
    elif case == "huge_png":
        path = tmp_path / "huge.png"
        Image.new("L", (9000, 8000)).save(path)
    elif case == "text_png":
        path = tmp_path / "notes.png"
        path.write_text("this is a text file with a .png name\n" * 20)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "bad_photometric":
        write_dicom(path, _ramp(), photometric="HSV")
    with pytest.raises(ImageRejected, match=expect) as info:
        decode(str(path), 32)
    assert "\n" not in str(info.value)


def test_compressed_syntax_without_its_plugin_is_refused_naming_the_syntax(monkeypatch):
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import JPEG2000

    path = next(p for p in corpus_files() if p.name == "MR2_J2KI.dcm")
    assert decode(str(path), 32).pixels.shape == (32, 32)  # with the plugins installed it decodes
    monkeypatch.setattr(get_decoder(JPEG2000), "_available", {})  # as if no JPEG 2000 plugin were installed
    with pytest.raises(ImageRejected, match=r"transfer syntax JPEG 2000 Image Compression \(1.2.840.10008.1.2.4.91\) "
                                            "has no installed decoder"):
        decode(str(path), 32)


def test_max_pixels_is_configurable_and_checked(monkeypatch, tmp_path):
    from verticals.errors import UserError

    path = tmp_path / "img.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setenv("VERTICALS_MEDICAL_MAX_PIXELS", "5000")
    with pytest.raises(ImageRejected, match="100×100 pixels is more than the limit of 5,000"):
        decode(str(path), 32)
    monkeypatch.setenv("VERTICALS_MEDICAL_MAX_PIXELS", "lots")
    with pytest.raises(UserError, match="VERTICALS_MEDICAL_MAX_PIXELS='lots'"):
        decode(str(path), 32)


def test_every_pydicom_data_file_is_an_example_or_a_reject_with_its_reason():
    files = corpus_files()
    assert len(files) >= 60  # the wheel's corpus: CT, MR, CR, US, NM, multi-frame, JPEG, JPEG 2000, JPEG-LS, RLE
    decoded, rejected = {}, {}
    for path in files:
        try:
            decoded[path.name] = decode(str(path), 32)
        except ImageRejected as exc:
            rejected[path.name] = str(exc)
    assert len(decoded) + len(rejected) == len(files)
    assert rejected["liver.dcm"].startswith("DICOM segmentation (SEG)")
    assert rejected["OT-PAL-8-face.dcm"].startswith("corrupt DICOM")
    assert rejected["emri_small_jpeg_2k_lossless_too_short.dcm"].startswith("corrupt or truncated DICOM")
    # Compressed syntaxes decode through the pylibjpeg plugins, identically to the uncompressed copy.
    for lossless, raw in (("MR2_J2KR.dcm", "MR2_UNCR.dcm"), ("emri_small_RLE.dcm", "emri_small.dcm"),
                          ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"), ("JPEG-LL.dcm", "JPEG-LL.dcm")):
        assert np.array_equal(decoded[lossless].pixels, decoded[raw].pixels), lossless
    assert decoded["emri_small.dcm"].frames == 10 and decoded["color3d_jpeg_baseline.dcm"].frames == 120
    assert {d.modality for d in decoded.values()} >= {"CT", "MR", "CR", "US", "NM"}


def test_the_decode_cache_serves_repeats_and_sees_changed_files(tmp_path, monkeypatch):
    from verticals.errors import UserError
    from verticals_medical.preprocess import DecodeCache

    path = tmp_path / "a.png"
    Image.fromarray(np.full((20, 20), 10, np.uint8), "L").save(path)
    cache = DecodeCache()
    first = cache.decode(str(path), 16, None)
    assert cache.decode(str(path), 16, None) is first  # served from memory
    assert cache.decode(str(path), 8, None) is not first  # another size is another entry
    Image.fromarray(np.full((20, 30), 200, np.uint8), "L").save(path)  # changed on disk: decoded again
    assert cache.decode(str(path), 16, None).pixels.max() > first.pixels.max()
    monkeypatch.setenv("VERTICALS_MEDICAL_CACHE_MB", "0")
    off = DecodeCache()
    assert off.decode(str(path), 16, None) is not off.decode(str(path), 16, None)
    monkeypatch.setenv("VERTICALS_MEDICAL_CACHE_MB", "0.0001")  # ~100 bytes: every entry is evicted at once
    tiny = DecodeCache()
    tiny.decode(str(path), 16, None)
    assert not tiny.entries and tiny.used == 0
    monkeypatch.setenv("VERTICALS_MEDICAL_CACHE_MB", "big")
    with pytest.raises(UserError, match="VERTICALS_MEDICAL_CACHE_MB='big' is not a number"):
        DecodeCache()
