"""De-identification: keyed pseudonyms and the DICOM PS3.15 Annex E Basic Profile attribute table.

What the platform keeps of a DICOM header is an **allow-list**, not a scrubbed copy: the pixel
attributes it needs to decode (rows, columns, bits, photometric interpretation, rescale and window
values), the modality and the SOP class, and four identifiers turned into keyed-hash pseudonyms before
they leave the reader — patient (``PatientID``), study (``StudyInstanceUID``), series
(``SeriesInstanceUID``) and instance (``SOPInstanceUID``). No other header value reaches a frame, a
manifest, a report, a log or a scoring output, so everything the Basic Application Level
Confidentiality Profile removes or replaces (PS3.15 2024b, Annex E, Table E.1-1, "Basic Profile"
column) is absent by construction; :data:`BASIC_PROFILE` lists those attributes with the profile's
action codes so tests can check outputs against the values of a real header. The table was written
from the 2024 editions of the standard and holds the attributes that carry values in practice, not all
of its rows; each name is checked against pydicom's data dictionary by the tests.

Libraries checked (2026-11): ``dicognito`` 0.19 implements the profile by rewriting datasets with
*random* (seeded) replacements, and ``deid`` 0.4 applies recipe files; both produce de-identified
DICOM files, which the platform never writes, and neither derives identifiers from a user's secret
key. Pseudonyms here are ``HMAC-SHA256(key, kind:value)``: the same patient gets the same pseudonym in
every run with the same key (studies of one patient can be linked, scores joined back by whoever holds
the key), and without the key the pseudonym cannot be reversed or recomputed.

The key comes from ``VERTICALS_PSEUDONYM_KEY`` (the key itself) or ``VERTICALS_PSEUDONYM_KEY_FILE``
(a file holding it). It is read when needed and never logged, printed or stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any, ClassVar

from verticals.errors import UserError

__all__ = ["BASIC_PROFILE", "KEY_ENV", "KEY_FILE_ENV", "PROFILE_VERSION", "PseudonymKeyError", "Pseudonymizer", "phi_values",
           "pseudonym_key"]

KEY_ENV = "VERTICALS_PSEUDONYM_KEY"
KEY_FILE_ENV = "VERTICALS_PSEUDONYM_KEY_FILE"
MIN_KEY_BYTES = 16
PROFILE_VERSION = ("DICOM PS3.15 Annex E, Table E.1-1 (2024 editions), Basic Application Level Confidentiality "
                   "Profile: header values kept by allow-list only; identifiers as HMAC-SHA256 pseudonyms")

#: Attributes of Table E.1-1 with their Basic Profile action (D: replace with a dummy, Z: zero or
#: dummy, X: remove, U: replace UID consistently, and the combinations the table uses). The platform
#: keeps none of their values; it derives pseudonyms from PatientID and the three instance-level UIDs.
BASIC_PROFILE: dict[str, str] = {
    "AccessionNumber": "Z", "AcquisitionComments": "X", "AcquisitionDate": "X/Z", "AcquisitionDateTime": "X/Z",
    "AcquisitionDeviceProcessingDescription": "X/D", "AcquisitionTime": "X/Z", "AdditionalPatientHistory": "X",
    "AdmissionID": "X", "AdmittingDate": "X", "AdmittingDiagnosesDescription": "X", "AdmittingTime": "X",
    "Allergies": "X", "Arbitrary": "X", "AuthorObserverSequence": "X", "BranchOfService": "X",
    "CommentsOnThePerformedProcedureStep": "X", "ConsultingPhysicianName": "X", "ContentCreatorName": "Z",
    "ContentDate": "Z/D", "ContentTime": "Z/D", "ContrastBolusAgent": "Z/D", "CountryOfResidence": "X",
    "CurrentPatientLocation": "X", "CurveDate": "X", "CurveTime": "X", "DerivationDescription": "X",
    "DeviceSerialNumber": "X/Z/D", "DeviceUID": "U", "EthnicGroup": "X", "FrameOfReferenceUID": "U",
    "GantryID": "X", "GeneratorID": "X", "ImageComments": "X", "InstanceCreationDate": "X/D",
    "InstanceCreationTime": "X/Z/D", "InstanceCreatorUID": "U", "InstitutionAddress": "X",
    "InstitutionName": "X/Z/D", "InstitutionalDepartmentName": "X", "IrradiationEventUID": "U",
    "MedicalAlerts": "X", "MedicalRecordLocator": "X", "MilitaryRank": "X", "ModifiedAttributesSequence": "X",
    "NameOfPhysiciansReadingStudy": "X", "Occupation": "X", "OperatorsName": "X/Z/D",
    "OriginalAttributesSequence": "X", "OtherPatientIDs": "X", "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X", "OverlayDate": "X", "OverlayTime": "X", "PatientAddress": "X", "PatientAge": "X",
    "PatientBirthDate": "Z", "PatientBirthName": "X", "PatientBirthTime": "X", "PatientComments": "X",
    "PatientID": "Z", "PatientInstitutionResidence": "X", "PatientInsurancePlanCodeSequence": "X",
    "PatientMotherBirthName": "X", "PatientName": "Z", "PatientReligiousPreference": "X", "PatientSex": "Z",
    "PatientSexNeutered": "X/Z", "PatientSize": "X", "PatientState": "X", "PatientTelephoneNumbers": "X",
    "PatientWeight": "X", "PerformedLocation": "X", "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepID": "X", "PerformedProcedureStepStartDate": "X", "PerformedProcedureStepStartTime": "X",
    "PerformingPhysicianIdentificationSequence": "X", "PerformingPhysicianName": "X", "PhysiciansOfRecord": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X", "PregnancyStatus": "X", "ProtocolName": "X/D",
    "ReferencedSOPInstanceUID": "U", "ReferringPhysicianAddress": "X", "ReferringPhysicianName": "Z",
    "ReferringPhysicianTelephoneNumbers": "X", "RequestAttributesSequence": "X", "RequestingPhysician": "X",
    "RequestingService": "X", "SOPInstanceUID": "U", "SeriesDate": "X/D",
    "SeriesDescription": "X", "SeriesInstanceUID": "U", "SeriesTime": "X/D", "SmokingStatus": "X",
    "SpecialNeeds": "X", "StationName": "X/Z/D", "StorageMediaFileSetUID": "U", "StudyComments": "X",
    "StudyDate": "Z", "StudyDescription": "X", "StudyID": "Z", "StudyInstanceUID": "U", "StudyTime": "Z",
    "TextComments": "X", "TextString": "X", "TimezoneOffsetFromUTC": "X", "TopicAuthor": "X",
    "TopicKeywords": "X", "TopicSubject": "X", "TopicTitle": "X", "UID": "U", "VerifyingObserverName": "D",
}


class PseudonymKeyError(UserError):
    """No usable pseudonym key."""


def pseudonym_key() -> bytes:
    """The user's pseudonym key (``VERTICALS_PSEUDONYM_KEY``, else the file ``VERTICALS_PSEUDONYM_KEY_FILE``).

    Raises:
        PseudonymKeyError: neither is set, the file is missing, or the key is shorter than 16 bytes.
    """
    raw = os.environ.get(KEY_ENV, "")
    where = KEY_ENV
    if not raw.strip():
        file = os.environ.get(KEY_FILE_ENV, "").strip()
        if not file:
            raise PseudonymKeyError(
                "no pseudonym key: patient, study and series ids are replaced by keyed pseudonyms and need one",
                hint=f"export {KEY_ENV}=\"$(openssl rand -hex 32)\" (keep it secret, reuse it to link runs), "
                     f"or put the key in a file and set {KEY_FILE_ENV}=/path/to/file")
        path = Path(file).expanduser()
        if not path.is_file():
            raise PseudonymKeyError(f"pseudonym key file {path} (from {KEY_FILE_ENV}) does not exist",
                                    hint=f"write the key into that file, or point {KEY_FILE_ENV} at the right one")
        raw = path.read_text(encoding="utf-8")
        where = f"key file {path}"
    key = raw.strip().encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"pseudonym key from {where} is shorter than {MIN_KEY_BYTES} bytes",
                                hint="use a long random key, e.g. the output of `openssl rand -hex 32`")
    return key


class Pseudonymizer:
    """Keyed-hash pseudonyms: ``<prefix>-`` and the first 16 hex digits of ``HMAC-SHA256(key, kind:value)``.

    The object holds the key in memory only; it has no ``__repr__`` that shows it and is never pickled
    into a manifest (preprocessor state holds no key).
    """

    PREFIX: ClassVar[dict[str, str]] = {"patient": "P", "study": "S", "series": "R", "image": "I"}

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else pseudonym_key()

    def __repr__(self) -> str:
        return "Pseudonymizer(<key hidden>)"

    def __reduce__(self) -> Any:  # never serialise the key
        raise TypeError("a Pseudonymizer holds the pseudonym key and cannot be pickled")

    def __call__(self, kind: str, value: str) -> str:
        digest = hmac.new(self._key, f"{kind}:{value}".encode("utf-8", "surrogatepass"), hashlib.sha256)
        return f"{self.PREFIX.get(kind, 'X')}-{digest.hexdigest()[:16]}"


def phi_values(dataset: Any, *, min_length: int = 4) -> dict[str, str]:
    """The values of :data:`BASIC_PROFILE` attributes a pydicom dataset holds (top level and nested
    sequences), as text, for checks that none of them appears in what the platform wrote. Values
    shorter than ``min_length`` characters (``M``, ``O``, ``0``) are left out: they occur by chance."""
    found: dict[str, str] = {}

    def visit(ds: Any) -> None:
        for element in ds:
            if element.VR == "SQ":
                for item in element.value or ():
                    visit(item)
                continue
            keyword = element.keyword
            if keyword not in BASIC_PROFILE or element.value in (None, ""):
                continue
            values = element.value if element.VM > 1 else [element.value]
            for value in values:
                text = str(value).strip().strip("\x00").strip()
                if len(text) >= min_length:
                    found[f"{keyword}={text}"] = text
                    if "^" in text:  # person names: each component is identifying on its own
                        for part in text.split("^"):
                            if len(part.strip()) >= min_length:
                                found[f"{keyword}.part={part.strip()}"] = part.strip()

    visit(dataset)
    return found
