"""De-identification: keyed pseudonyms, the key's handling, and the pydicom-data corpus through training
and scoring with no PHI attribute value in any file the platform wrote or in what it logged."""

from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path

import polars as pl
import pytest
from dicom_support import corpus_files
from medical_support import KEY, SmallPlugin
from verticals.testing import use_plugins
from verticals_medical.deid import BASIC_PROFILE, Pseudonymizer, PseudonymKeyError, phi_values, pseudonym_key

SECTIONAL = {"CT", "MR", "NM"}


def test_pseudonyms_are_keyed_stable_and_never_reveal_the_key(monkeypatch, tmp_path):
    one, two = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    assert one("patient", "12345") == one("patient", "12345")
    assert one("patient", "12345") != two("patient", "12345")  # another key, another pseudonym
    assert one("patient", "12345") != one("study", "12345")
    assert re.fullmatch(r"P-[0-9a-f]{16}", one("patient", "12345"))
    assert "k" * 8 not in repr(one)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(one)
    # A used preprocessor pickles (flows persist training stages) without the key or cached headers.
    from verticals_medical.preprocess import MedicalPreprocessor, medical_schema

    monkeypatch.setenv("VERTICALS_PSEUDONYM_KEY", KEY)
    pre = MedicalPreprocessor(medical_schema(["a", "b"]), ["a", "b"])
    assert pre.pseudonymize("patient", "x") == Pseudonymizer(KEY.encode())("patient", "x")
    blob = pickle.dumps(pre)
    assert KEY.encode() not in blob
    assert pickle.loads(blob).pseudonymize("patient", "x") == pre.pseudonymize("patient", "x")
    monkeypatch.delenv("VERTICALS_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("VERTICALS_PSEUDONYM_KEY_FILE", raising=False)
    with pytest.raises(PseudonymKeyError) as info:
        pseudonym_key()
    assert "no pseudonym key" in str(info.value) and "VERTICALS_PSEUDONYM_KEY=" in info.value.hint
    monkeypatch.setenv("VERTICALS_PSEUDONYM_KEY", "short")
    with pytest.raises(PseudonymKeyError, match="shorter than 16 bytes"):
        pseudonym_key()
    monkeypatch.delenv("VERTICALS_PSEUDONYM_KEY")
    monkeypatch.setenv("VERTICALS_PSEUDONYM_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(PseudonymKeyError, match="does not exist"):
        pseudonym_key()


def test_basic_profile_table_names_real_dicom_keywords():
    from pydicom.datadict import keyword_dict

    unknown = [k for k in BASIC_PROFILE if k not in keyword_dict]
    assert not unknown
    assert {"PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "StudyDate", "AccessionNumber",
            "ReferringPhysicianName", "StudyInstanceUID"} <= set(BASIC_PROFILE)


def _phi() -> dict[str, str]:
    """PHI values of every corpus file (those of four or more characters)."""
    import pydicom

    found: dict[str, str] = {}
    for path in corpus_files():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            continue
        found.update(phi_values(ds))
    return found


def _texts(root: Path) -> list[tuple[Path, str]]:
    """Every file under ``root`` as text: Parquet as CSV of its rows, everything else decoded as latin-1."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            text = frame.select(pl.all().cast(pl.String)).write_csv() if frame.width else ""
            out.append((path, text + " ".join(frame.columns)))
        else:
            out.append((path, path.read_bytes().decode("latin-1")))
    return out


def _leaks(texts: list[tuple[Path, str]], phi: dict[str, str], inputs: list[Path]) -> list[str]:
    """Where a PHI value occurs. The input files' own paths are echoed by design (rejects name the
    file) and are removed first; numbers and UIDs count only as whole tokens (not inside a float, a
    hash or ``part-00000``); trivial values (fewer than 5 characters, or fewer than 3 distinct ones)
    are not identifying and are left out."""
    leaks = []
    names = sorted({str(p) for p in inputs} | {p.name for p in inputs} | {str(p.parent) for p in inputs},
                   key=len, reverse=True)
    cleaned = []
    for path, text in texts:
        for name in names:
            text = text.replace(name, " ")
        cleaned.append((path, text))
    for label, value in phi.items():
        if len(value) < 5 or len(set(value)) < 3:
            continue
        if value.replace(".", "").isdigit():
            pattern = re.compile(rf"(?<![0-9.]){re.escape(value)}(?![0-9])")
        else:
            pattern = re.compile(re.escape(value))
        for path, text in cleaned:
            if pattern.search(text):
                leaks.append(f"{label} in {path}")
    return leaks


@pytest.mark.slow
def test_corpus_trains_and_scores_without_any_phi_in_what_was_written(tmp_path, monkeypatch, caplog, capfd):
    """The pydicom-data corpus as a user's own data (CSV of path,label): registered, trained, scored;
    then every file in the model store and the output, and everything logged or printed, is searched for
    the PHI values of the corpus headers (names, ids, dates, institutions, UIDs, ...)."""
    from verticals.engine import train
    from verticals.owndata import register_config
    from verticals.scoring import score

    monkeypatch.setenv("VERTICALS_PSEUDONYM_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font lookups, not ours
    import pydicom

    rows = []
    for path in corpus_files():
        try:
            modality = str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", ""))
        except Exception:
            modality = ""
        rows.append((str(path), "sectional" if modality in SECTIONAL else "projection"))
    listing = tmp_path / "corpus.csv"
    pl.DataFrame(rows, schema=["path", "label"], orient="row").write_csv(listing)
    config = tmp_path / "corpus.toml"
    config.write_text('name = "corpus"\ntemplate = "medical.images"\ndata = "corpus.csv"\n'
                      '[target]\nclasses = ["projection", "sectional"]\n[images]\nsize = 32\nepochs = 2\n')
    home = tmp_path / "home"
    monkeypatch.setenv("VERTICALS_HOME", str(home))
    with use_plugins({"medical": SmallPlugin(tmp_path / "ct", templates=True)}):
        register_config(config, home=home)
    with use_plugins({"medical": SmallPlugin(tmp_path / "ct", templates=True)}):
        result = train("medical.corpus", home=home, progress=False, variants=())
        out = tmp_path / "scored"
        manifest = score("medical.corpus", corpus_files()[0].parent, out, home=home, progress=False)
    files = corpus_files()
    assert manifest["rows_in"] == len(files) == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == 4  # two SEG objects, a file without the DICM prefix, a truncated one
    rejected = pl.read_parquet(out / "_rejects.parquet")
    assert all(r.startswith(str(files[0].parent)) for r in rejected["_reason"].to_list())
    training = result.manifest["training_data"]
    assert sum(training["preprocessor_rejects"].values()) == 4
    phi = _phi()
    assert len(phi) > 100 and any(k.startswith("PatientName") for k in phi)
    captured = capfd.readouterr()
    log = "\n".join(r.getMessage() for r in caplog.records)
    texts = [*_texts(home), *_texts(out), (Path("<log>"), log), (Path("<stdout>"), captured.out),
             (Path("<stderr>"), captured.err)]
    assert texts and sum(len(t) for _, t in texts) > 10_000
    leaks = _leaks(texts, phi, files)
    assert not leaks, leaks[:10]
    # The scan would have caught a leak: the raw values are there to be found in the source headers.
    raw = io.BytesIO()
    pl.DataFrame({"v": list(phi.values())}).write_csv(raw)
    assert len(_leaks([(Path("<raw>"), raw.getvalue().decode())], phi, files)) > 50
