"""The RT reference chain, as pydicom data set items.

- RTSTRUCT -> CT series: ReferencedFrameOfReferenceSequence >
  RTReferencedStudySequence > RTReferencedSeriesSequence > SeriesInstanceUID
- RTPLAN -> RTSTRUCT: ReferencedStructureSetSequence > ReferencedSOPInstanceUID
- RTDOSE -> RTPLAN: ReferencedRTPlanSequence > ReferencedSOPInstanceUID,
  and -> RTSTRUCT as the RTPLAN does

Each builder returns {keyword: items}, to be spread into a data set
(`Dataset.update(...)` or keyword arguments). With `sop_classes=False` the
items hold no ReferencedSOPClassUID (a reader must not need it).
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, RTDoseStorage, RTPlanStorage, RTStructureSetStorage

CT_CLASS = CTImageStorage
RTSTRUCT_CLASS = RTStructureSetStorage
RTPLAN_CLASS = RTPlanStorage
RTDOSE_CLASS = RTDoseStorage
#: Detached Study Management, the class RT objects give a referenced study
STUDY_COMPONENT_CLASS = "1.2.840.10008.3.1.2.3.1"


def _item(**elements) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _sop_ref(sop_class: str, sop_uid: str, sop_classes: bool) -> Dataset:
    if sop_classes:
        return _item(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_uid)
    return _item(ReferencedSOPInstanceUID=sop_uid)


def rtstruct_refs(
    frame_uid: str,
    study_uid: str,
    series_uid: str,
    *,
    contour_images: list[Dataset] | None = None,
    sop_classes: bool = True,
) -> dict[str, list[Dataset]]:
    """The RTSTRUCT's ReferencedFrameOfReferenceSequence, down to the CT series.

    `contour_images`, if given, becomes the series item's ContourImageSequence.
    """
    series = _item(SeriesInstanceUID=series_uid)
    if contour_images is not None:
        series.ContourImageSequence = contour_images
    study = _sop_ref(STUDY_COMPONENT_CLASS, study_uid, sop_classes)
    study.RTReferencedSeriesSequence = [series]
    frame = _item(FrameOfReferenceUID=frame_uid, RTReferencedStudySequence=[study])
    return {"ReferencedFrameOfReferenceSequence": [frame]}


def rtplan_refs(rs_sop_uid: str, *, sop_classes: bool = True) -> dict[str, list[Dataset]]:
    """The RTPLAN's ReferencedStructureSetSequence."""
    return {"ReferencedStructureSetSequence": [_sop_ref(RTSTRUCT_CLASS, rs_sop_uid, sop_classes)]}


def rtdose_refs(plan_sop_uid: str, rs_sop_uid: str | None = None, *, sop_classes: bool = True) -> dict[str, list[Dataset]]:
    """The RTDOSE's ReferencedRTPlanSequence and, given `rs_sop_uid`, its
    ReferencedStructureSetSequence."""
    refs = {"ReferencedRTPlanSequence": [_sop_ref(RTPLAN_CLASS, plan_sop_uid, sop_classes)]}
    if rs_sop_uid is not None:
        refs |= rtplan_refs(rs_sop_uid, sop_classes=sop_classes)
    return refs
