"""The records' types, for type checkers: one `TypedDict` per level.

Written out (a type checker cannot read the field table at run time);
`tests/test_async_api.py` holds them to the field table and to the
column types the writers use (`write.columns`), so they cannot drift.
Blanks are as the dictionary says: "" for text, None for numbers, [] for
lists of strings. Extra tags (`tags=`) add keys these do not name.
"""

from __future__ import annotations

from typing import TypedDict


class _Common(TypedDict):
    patient_ID: str
    study: str
    study_description: str
    series: str
    series_description: str
    subseries: str
    modality: str
    instance_uid: str
    reference_ct: str
    reference_rs: str
    reference_pl: str
    reference_frame: str
    folder: str
    file_path: str
    orientation: list[float] | None
    orientation_type: str
    MR_repetition_time: float | None
    MR_echo_time: float | None
    MR_scan_sequence: str
    MR_magnetic_field_strength: float | None
    MR_imaged_nucleus: str


class SubseriesRecord(_Common):
    """One line of the default output: a subseries (`index`, `aindex`)."""

    instances: int
    reference_series: list[str]
    reference_modality: list[str]


class InstanceRecord(_Common):
    """One file's record (`iter_instances`, `aiter_instances`,
    `read_header`, `read_bytes`)."""

    sop_class_uid: str
    transfer_syntax: str
