"""PET/SPECT units, radionuclide and timing from the DICOM files a volume was loaded from.

Slicer's DICOM module keeps, on every scalar volume it loads, the SOP Instance UIDs of its files in
slice order (node attribute ``DICOM.instanceUIDs``; DICOMScalarVolumePlugin reverses the list when
it reverses the slices), and the files themselves in ``slicer.dicomDatabase``.  This glue finds
those files and hands them to the engine (:mod:`TAREDosimetryLib.imaging.dicomtiming` and
:mod:`TAREDosimetryLib.imaging.dicomactivity`), so the panel gets exactly what ``tare-dosimetry run``
gets from the same series: units checked, a foreign radionuclide refused, the hours since
administration and the decay correction from the header (the panel's own values win when the user
set them), and per-slice decay factors when slices were acquired at different times.
"""

import slicer

from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.imaging.dicomactivity import activity_values, header_activity_params
from TAREDosimetryLib.imaging.dicomtiming import UNIT_MEANINGS, activity_timing, read_activity_header

#: Node attribute set by Slicer's DICOMScalarVolumePlugin: the instance UIDs, one per slice (k order).
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


class DicomActivityHeader:
    """The activity image's DICOM header, read through Slicer's DICOM database."""

    @staticmethod
    def dicomFilesOfVolume(volumeNode) -> list:
        """Paths of the DICOM files of ``volumeNode`` in its slice order; [] when it was not loaded from DICOM."""
        if volumeNode is None:
            return []
        uids = [u for u in (volumeNode.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split() if u != "Unknown"]
        if not uids:
            return []
        database = getattr(slicer, "dicomDatabase", None)
        if database is None:
            raise InputError(f"volume '{volumeNode.GetName()}' came from DICOM but Slicer's DICOM database is not open "
                             "(open the DICOM module once)")
        files = [database.fileForInstance(uid) for uid in uids]
        missing = [uid for uid, f in zip(uids, files) if not f]
        if missing:
            raise InputError(f"volume '{volumeNode.GetName()}': {len(missing)} of its {len(uids)} DICOM file(s) are no "
                             f"longer in the DICOM database (first: {missing[0]}); re-import the series")
        return [str(f) for f in files]

    @staticmethod
    def isFromDicom(volumeNode) -> bool:
        return bool(volumeNode is not None and (volumeNode.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").strip())

    #: {(node ID, instance UIDs): ActivityHeader}: the panel redraws often; the files are read once per volume.
    _headerCache = {}

    @staticmethod
    def headerOfVolume(volumeNode, reread: bool = False):
        """The engine's ActivityHeader of a volume loaded from DICOM (read once per volume), or None."""
        if not DicomActivityHeader.isFromDicom(volumeNode):
            return None
        key = (volumeNode.GetID(), volumeNode.GetAttribute(INSTANCE_UIDS_ATTRIBUTE))
        cache = DicomActivityHeader._headerCache
        if reread or key not in cache:
            files = DicomActivityHeader.dicomFilesOfVolume(volumeNode)
            try:
                header = read_activity_header(files)
            except InputError:
                raise
            except Exception as exc:  # a file moved, truncated or not DICOM: pydicom's own errors
                raise InputError(f"volume '{volumeNode.GetName()}': its DICOM files could not be read ({exc}); "
                                 "re-import the series") from None
            DicomActivityHeader._headerCache = cache = {key: header}  # the selected volume's only
        return cache[key]

    @staticmethod
    def describeTiming(volumeNode, halfLifeH: float = 64.05, reread: bool = False) -> str:
        """One line for the panel: the header's units and time since administration, or why there is none
        ('' when the volume was not loaded from DICOM)."""
        try:
            header = DicomActivityHeader.headerOfVolume(volumeNode, reread=reread)
        except InputError as exc:
            return f"DICOM header: {exc}"
        if header is None:
            return ""
        units = UNIT_MEANINGS.get(header.units, header.units) if header.units else "no Units"
        try:
            timing = activity_timing(header, halfLifeH).describe()
        except InputError as exc:
            timing = f"no time since administration ({exc})"
        return f"DICOM header ({header.modality or 'image'}, {units}): {timing}"

    @staticmethod
    def headerTimingHours(volumeNode, halfLifeH: float):
        """(hours since administration, decay-corrected) from the volume's header, or None when it has no
        usable timing (or was not loaded from DICOM)."""
        try:
            header = DicomActivityHeader.headerOfVolume(volumeNode)
            timing = activity_timing(header, halfLifeH) if header is not None else None
        except InputError:
            return None
        return None if timing is None else (timing.hours_since_administration, timing.image_decay_corrected)

    @staticmethod
    def withHeaderTiming(volumeNode, params):
        """``params`` with the header's timing when the panel gives none for an absolute image (what the run
        will use: the user's hours or 'decay corrected' override the header)."""
        if params.calibration != "absolute" or params.hours_since_administration is not None or params.image_decay_corrected:
            return params
        found = DicomActivityHeader.headerTimingHours(volumeNode, params.half_life_h)
        if found is None:
            return params
        return params.replace(hours_since_administration=found[0], image_decay_corrected=found[1])

    @staticmethod
    def applyToActivity(volumeNode, activity, params, modality=None, timingOverridden: bool = False,
                        quantitativeExplicit: bool = False, allowOtherRadionuclide: bool = False):
        """(activity, params, record, warnings) with what the DICOM header of ``volumeNode`` says.

        activity : the engine Volume made from ``volumeNode`` (same k order as the node's slices).
        params : DosimetryParams from the panel; ``timingOverridden`` when the user set the hours
            since administration or the decay-corrected box (they then win over the header).
        modality : 'pet' or 'spect'; None: from the header (PT is PET, anything else SPECT).
        Returns ``(activity, params, None, [])`` unchanged for a volume that was not loaded from DICOM.
        The record belongs in the result's inputs (``result.inputs['activity_dicom']``), as the
        command line writes it into metrics.json.
        """
        files = DicomActivityHeader.dicomFilesOfVolume(volumeNode)
        if not files:
            return activity, params, None, []
        header = DicomActivityHeader.headerOfVolume(volumeNode)
        if modality is None:
            modality = "pet" if header.modality.upper() == "PT" else "spect"
        params, record, warnings, factors = header_activity_params(
            params, header, modality=modality, timing_overridden=timingOverridden,
            quantitative_explicit=quantitativeExplicit, allow_other_radionuclide=allowOtherRadionuclide)
        if factors is not None and len(factors) != activity.shape[0]:
            raise InputError(f"volume '{volumeNode.GetName()}' has {activity.shape[0]} slices but {len(factors)} DICOM files")
        values = activity_values(activity.array, header, factors, params.calibration)
        if values is not activity.array:
            activity = activity.with_array(values)
        record["source"] = {"node": volumeNode.GetName(), "files": len(files)}
        return activity, params, record, warnings
