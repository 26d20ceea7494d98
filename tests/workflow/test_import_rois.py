"""Importing existing reads: SEG and RTSTRUCT files matched to a phantom study's images in the inbox."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from mre_core.outputs.seg import build_seg
from mre_core.store.inbox import KEPT, Inbox
from mre_core.store.labels import labelled_studies
from mre_core.store.results import Store
from mre_core.store.schema import reader_rois
from mre_core.workflow.import_rois import ImportReport, fill_contour, import_rois, person_name
from tests.result_factory import make_result

ROWS, COLS = 204, 256


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-slice phantom exam (one patient, several series), written as a scanner would."""
    from mre_core.phantom.cohort import write_demo_study

    return write_demo_study(tmp_path_factory.mktemp("phantom"), seed=5, n_slices=3)


def _elastograms(study: Path) -> list[Dataset]:
    """The first gray-scale series of three images (whatever its file names), full datasets, in instance order."""
    series: dict[str, list[Dataset]] = {}
    for p in sorted(f for f in study.rglob("*") if f.is_file()):
        ds = pydicom.dcmread(p)
        if ds.get("PhotometricInterpretation") == "MONOCHROME2":
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    images = next(v for _, v in sorted(series.items(), key=lambda kv: int(kv[1][0].SeriesNumber)) if len(v) == 3)
    return sorted(images, key=lambda d: int(d.InstanceNumber))


def _rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((ROWS, COLS), bool)
    m[r0:r1, c0:c1] = True
    return m


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    ii, jj = np.indices((ROWS, COLS))
    return ((ii - cy) / ry) ** 2 + ((jj - cx) / rx) ** 2 <= 1


def _segment(number: int, label: str, kind: str) -> hd.seg.SegmentDescription:
    algorithm = None if kind == "MANUAL" else hd.AlgorithmIdentificationSequence(
        name="some model", version="1", family=codes.cid7162.ArtificialIntelligence)
    return hd.seg.SegmentDescription(segment_number=number, segment_label=label,
                                     segmented_property_category=codes.SCT.Organ,
                                     segmented_property_type=codes.SCT.Liver if "liver" in label.lower()
                                     else codes.SCT.Spleen, algorithm_type=kind,
                                     algorithm_identification=algorithm)


def _write_seg(path: Path, images: list[Dataset], masks: np.ndarray, *, kind: str = "MANUAL",
               reader: str | None = "Reader^Ann", labels: tuple[str, ...] = ("Liver ROI",),
               omit_empty: bool = False) -> Path:
    """A BINARY SEG of ``masks`` ([n, rows, cols] bool, or [n, rows, cols, segments]) on ``images``."""
    seg = hd.seg.Segmentation(
        source_images=images, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(i + 1, label, kind) for i, label in enumerate(labels)],
        series_instance_uid=generate_uid(), series_number=300, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="Some PACS", manufacturer_model_name="viewer", software_versions="1", device_serial_number="1",
        content_creator_name=reader, omit_empty_frames=omit_empty)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path, enforce_file_format=True)
    return path


def _store(tmp_path: Path) -> tuple[Store, Inbox]:
    store = Store(f"sqlite:///{tmp_path / 'results.sqlite'}")
    return store, Inbox(store, tmp_path / "inbox")


def _run(paths: list[Path], store: Store, inbox: Inbox, **kw: object) -> ImportReport:
    return import_rois(paths, store, inbox, imported_by="test", **kw)  # type: ignore[arg-type]


def _rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(reader_rois)).scalar() or 0)


def test_a_folder_of_images_and_a_manual_seg_imports_in_one_go(study: Path, tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)
    masks = np.stack([_rect(60, 120, 70, 150), _ellipse(100, 128, 30, 45), np.zeros((ROWS, COLS), bool)])
    seg = _write_seg(tmp_path / "reads" / "liver.dcm", images, masks)
    report = _run([study, seg], store, inbox)

    n_files = sum(1 for p in study.rglob("*") if p.is_file())
    assert report.images_filed == n_files and report.unmatched == []
    assert inbox.status(str(images[0].StudyInstanceUID))["status"] == KEPT  # filed, never analysed for it
    (obj,) = report.imported
    assert (obj.file, obj.source, obj.reader, obj.n_images, obj.added, obj.already) == (
        "liver.dcm", "seg", "Ann Reader", 3, 3, 0)
    assert obj.read_date == str(pydicom.dcmread(seg).ContentDate) and obj.study_uid == str(images[0].StudyInstanceUID)

    (found,) = labelled_studies(store)
    assert (found.source, found.reader, found.patient_id) == ("seg", "Ann Reader", str(images[0].PatientID))
    assert (found.study_date, found.manufacturer) == (str(images[0].StudyDate), str(images[0].Manufacturer))
    assert found.series_uid == str(images[0].SeriesInstanceUID)
    for image, mask in zip(images, masks):
        assert np.array_equal(found.rois[str(image.SOPInstanceUID)], mask)  # the empty frame is a read too

    again = _run([seg], store, inbox)
    assert (again.imported[0].added, again.imported[0].already) == (0, 3) and _rows(store) == 3


def test_an_image_the_seg_has_no_frame_for_is_not_a_read(study: Path, tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)
    masks = np.stack([_rect(60, 120, 70, 150), np.zeros((ROWS, COLS), bool), _rect(80, 90, 80, 90)])
    seg = _write_seg(tmp_path / "omit.dcm", images, masks, omit_empty=True)
    report = _run([study, seg], store, inbox)
    (found,) = labelled_studies(store)
    assert report.imported[0].n_images == 2
    assert sorted(found.rois) == sorted(str(images[i].SOPInstanceUID) for i in (0, 2))


def test_automatic_and_unnamed_reads_are_refused_with_the_reason(study: Path, tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)[:2]
    masks = np.stack([_rect(60, 120, 70, 150)] * 2)
    auto = _write_seg(tmp_path / "auto.dcm", images, masks, kind="AUTOMATIC")
    unnamed = _write_seg(tmp_path / "unnamed.dcm", images, masks, reader=None)
    report = _run([study, auto, unnamed], store, inbox)
    reasons = dict(report.unmatched)
    assert "an algorithm's output, not a reader's ROI" in reasons["auto.dcm"]
    assert "no reader name in the object; pass --reader" in reasons["unnamed.dcm"]
    assert report.imported == [] and _rows(store) == 0
    named = _run([unnamed], store, inbox, reader="Dr X")
    assert named.imported[0].reader == "Dr X" and labelled_studies(store)[0].reader == "Dr X"


def test_the_liver_segment_is_chosen_among_several_or_the_read_refused(study: Path, tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)[:2]
    liver, spleen = _rect(60, 120, 70, 150), _rect(10, 30, 10, 30)
    both = np.stack([np.stack([spleen, liver], axis=-1)] * 2)  # [frames, rows, cols, segments]
    good = _write_seg(tmp_path / "two.dcm", images, both, labels=("Spleen", "Liver ROI"))
    bad = _write_seg(tmp_path / "none.dcm", images, both, labels=("Spleen", "Kidney"))
    report = _run([study, good, bad], store, inbox)
    assert dict(report.unmatched)["none.dcm"] == (
        "2 segments, none recognisable as the liver ROI (labels: 'Spleen', 'Kidney')")
    (found,) = labelled_studies(store)
    assert np.array_equal(found.rois[str(images[0].SOPInstanceUID)], liver)  # segment 2, "Liver ROI"


def test_unknown_study_wrong_grid_and_non_dicom_are_named_while_the_good_read_imports(study: Path,
                                                                                       tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)
    _write_seg(tmp_path / "in" / "good.dcm", images[:2], np.stack([_rect(60, 120, 70, 150)] * 2))
    strangers = [replace_uids(ds) for ds in images[:2]]
    for ds in strangers[1:]:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = strangers[0].StudyInstanceUID, strangers[0].SeriesInstanceUID
    _write_seg(tmp_path / "in" / "unknown.dcm", strangers, np.stack([_rect(60, 120, 70, 150)] * 2))
    small = [small_grid(ds) for ds in images[:1]]
    _write_seg(tmp_path / "in" / "wrong.dcm", small, np.ones((1, 102, 128), bool))
    unsent = replace_uids(images[0], series_too=False)  # an image of this series the store never received
    _write_seg(tmp_path / "in" / "partial.dcm", [images[2], unsent], np.stack([_rect(60, 120, 70, 150)] * 2))
    (tmp_path / "in" / "notes.txt").write_text("reader's notes, not DICOM")

    report = _run([study, tmp_path / "in"], store, inbox)
    reasons = dict(report.unmatched)
    assert set(reasons) == {"in/unknown.dcm", "in/wrong.dcm", "in/notes.txt"}
    assert reasons["in/unknown.dcm"].startswith("references 2 images, none in the store (send the study")
    assert "102×128" in reasons["in/wrong.dcm"] and "204×256" in reasons["in/wrong.dcm"]
    assert "not a DICOM file" in reasons["in/notes.txt"]
    imported = {o.file: o for o in report.imported}
    assert set(imported) == {"in/good.dcm", "in/partial.dcm"}
    assert (imported["in/partial.dcm"].n_images, imported["in/partial.dcm"].missing) == (1, 1)
    text = report.describe()
    assert "not imported in/notes.txt: not a DICOM file" in text and "1 referenced image(s) not in the store" in text
    assert "Traceback" not in text


def replace_uids(ds: Dataset, series_too: bool = True) -> Dataset:
    """A copy of ``ds`` as an image the store has never seen (of a study it has never seen, with ``series_too``)."""
    out = pydicom.dcmread(io.BytesIO(_bytes(ds)))
    out.SOPInstanceUID = generate_uid()
    if series_too:
        out.StudyInstanceUID, out.SeriesInstanceUID = generate_uid(), generate_uid()
    return out


def small_grid(ds: Dataset) -> Dataset:
    """The same image (same UIDs) claiming a 102 x 128 grid, as a read made on a resampled copy would."""
    out = pydicom.dcmread(io.BytesIO(_bytes(ds)))
    out.Rows, out.Columns = 102, 128
    out.PixelData = np.zeros((102, 128), np.uint16).tobytes()
    return out


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _rtstruct(path: Path, contours: list[tuple[Dataset | None, np.ndarray]], *, operator: str = "Doe^Jane",
              name: str = "Liver ROI", algorithm: str = "MANUAL", candidates: list[Dataset] = ()) -> Path:
    """An RTSTRUCT with one ROI whose CLOSED_PLANAR contours are ``(image, [(row, col), ...] pixel corners)``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    first = next(img for img, _ in contours if img is not None) if any(i is not None for i, _ in contours) \
        else candidates[0]
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = first.StudyInstanceUID, generate_uid(), "RTSTRUCT"
    ds.PatientID, ds.StructureSetLabel, ds.StructureSetDate = first.PatientID, "LIVER", "20240105"
    if operator:
        ds.OperatorsName = operator
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ROIGenerationAlgorithm = 1, name, algorithm
    ds.StructureSetROISequence = [roi]
    items = []
    for image, corners in contours:
        ref = image if image is not None else candidates[0]
        origin = np.asarray(ref.ImagePositionPatient, float)
        dr, dc = (float(v) for v in ref.PixelSpacing)
        iop = np.asarray(ref.ImageOrientationPatient, float)
        pts = [origin + c * dc * iop[:3] + r * dr * iop[3:] for r, c in corners]
        c = Dataset()
        c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(pts)
        c.ContourData = [round(float(v), 4) for p in pts for v in p]
        if image is not None:
            ref_item = Dataset()
            ref_item.ReferencedSOPClassUID, ref_item.ReferencedSOPInstanceUID = image.SOPClassUID, image.SOPInstanceUID
            c.ContourImageSequence = [ref_item]
        items.append(c)
    contour_roi = Dataset()
    contour_roi.ReferencedROINumber, contour_roi.ContourSequence = 1, items
    ds.ROIContourSequence = [contour_roi]
    if candidates:
        refs = []
        for img in candidates:
            r = Dataset()
            r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = img.SOPClassUID, img.SOPInstanceUID
            refs.append(r)
        series, st, frame = Dataset(), Dataset(), Dataset()
        series.SeriesInstanceUID, series.ContourImageSequence = first.SeriesInstanceUID, refs
        st.ReferencedSOPInstanceUID, st.RTReferencedSeriesSequence = first.StudyInstanceUID, [series]
        frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = first.FrameOfReferenceUID, [st]
        ds.ReferencedFrameOfReferenceSequence = [frame]
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_an_rtstruct_polygon_is_filled_on_its_image(study: Path, tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)
    square = [(50, 60), (50, 119), (89, 119), (89, 60)]  # rows 50-89, cols 60-119: 40 x 60 pixels, edges included
    small = [(150, 20), (150, 29), (159, 29), (159, 20)]  # a second contour on the same image: 10 x 10
    rt = _rtstruct(tmp_path / "rt.dcm", [(images[1], square), (images[1], small)])
    report = _run([study, rt], store, inbox)
    assert report.unmatched == []
    (obj,) = report.imported
    assert (obj.source, obj.reader, obj.read_date, obj.label) == ("rtstruct", "Jane Doe", "20240105", "Liver ROI")
    (found,) = labelled_studies(store)
    assert list(found.rois) == [str(images[1].SOPInstanceUID)] and found.source == "rtstruct"
    mask = found.rois[str(images[1].SOPInstanceUID)]
    assert abs(int(mask.sum()) - (40 * 60 + 10 * 10)) <= 60 + 10  # within one pixel row of each polygon
    rows, cols = np.nonzero(mask[:120])
    assert abs(rows.min() - 50) <= 1 and abs(rows.max() - 89) <= 1 and (cols.min(), cols.max()) == (60, 119)
    assert mask[155, 25] and not mask[120:140].any()


def test_an_rtstruct_contour_without_an_image_goes_to_the_plane_it_lies_in(study: Path, tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)
    square = [(50, 60), (50, 119), (89, 119), (89, 60)]
    # the contour is drawn on image 3's plane but names no image; images 1-3 are the candidates
    rt = _rtstruct(tmp_path / "rt.dcm", [(None, square)], candidates=[images[2], images[0], images[1]])
    automatic = _rtstruct(tmp_path / "auto_rt.dcm", [(images[0], square)], algorithm="AUTOMATIC")
    nobody = _rtstruct(tmp_path / "nobody.dcm", [(images[0], square)], operator="")
    report = _run([study, rt, automatic, nobody], store, inbox)
    reasons = dict(report.unmatched)
    assert "an algorithm's output" in reasons["auto_rt.dcm"] and "pass --reader" in reasons["nobody.dcm"]
    (found,) = labelled_studies(store)
    assert list(found.rois) == [str(images[2].SOPInstanceUID)]


def test_our_own_seg_of_a_drawn_roi_imports_and_of_an_unreviewed_one_is_refused(tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    result = make_result([3.0, 3.2, 3.1], patient_id="OWN1")
    folder = tmp_path / "exam"
    folder.mkdir()
    for e in result.study.series.slices:  # the study's images, as the scanner sent them
        (folder / f"{e.instance_number}.dcm").write_bytes(_bytes(_with_pixels(e.header)))
    drawn = {s.sop_uid: "replaced" for s in result.slices}
    build_seg(result, manual_rois=drawn, reader="Dr O").save_as(tmp_path / "manual.dcm", enforce_file_format=True)
    edited = {result.slices[0].sop_uid: "edited"}
    build_seg(result, manual_rois=edited, reader="Dr E").save_as(tmp_path / "edited.dcm", enforce_file_format=True)
    build_seg(result).save_as(tmp_path / "auto.dcm", enforce_file_format=True)

    report = _run([folder, tmp_path / "manual.dcm", tmp_path / "auto.dcm"], store, inbox)
    assert "an algorithm's output" in dict(report.unmatched)["auto.dcm"]
    (obj,) = report.imported
    assert obj.reader == "Dr O" and obj.n_images == len(result.slices)
    (found,) = labelled_studies(store)
    for s in result.slices:
        assert np.array_equal(found.rois[s.sop_uid], s.roi)
    semi = _run([tmp_path / "edited.dcm"], store, inbox)
    assert semi.imported[0].reader == "Dr E" and semi.imported[0].added == len(result.slices)


def _with_pixels(header: Dataset) -> Dataset:
    """The image file of a result's header: the header, its file meta and a constant 16-bit image."""
    ds = Dataset()
    ds.update(header)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = header.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = header.SOPInstanceUID
    ds.PixelData = np.full((int(ds.Rows), int(ds.Columns)), 300, np.uint16).tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def test_fill_contour_and_person_names() -> None:
    mask = fill_contour(np.array([[2.0, 1.0], [6.0, 1.0], [6.0, 3.0], [2.0, 3.0]]), (5, 8))  # (col, row) corners
    assert mask.sum() == 5 * 3 and mask[1:4, 2:7].all()
    assert person_name("Smith^Jo") == "Jo Smith" and person_name("Dr O^") == "Dr O" and person_name("") == ""


def test_missing_paths_are_named(tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    report = _run([tmp_path / "nowhere"], store, inbox)
    assert report.imported == [] and report.unmatched[0][1].startswith("file or folder not found")


def test_seg_frames_naming_no_image_are_placed_by_their_plane_position(study: Path, tmp_path: Path) -> None:
    store, inbox = _store(tmp_path)
    images = _elastograms(study)
    masks = np.stack([_rect(60, 70, 70, 80), _rect(100, 130, 100, 200), _ellipse(90, 90, 20, 20)])
    path = _write_seg(tmp_path / "bare.dcm", images, masks)
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:  # an exporter that names the images only series-wide
        del item.DerivationImageSequence
    listed = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence = list(reversed(listed))  # not in frame order
    ds.save_as(path)
    report = _run([study, path], store, inbox)
    assert report.unmatched == [] and report.imported[0].n_images == 3
    (found,) = labelled_studies(store)
    for image, mask in zip(images, masks):
        assert np.array_equal(found.rois[str(image.SOPInstanceUID)], mask)
