"""The names ``alref eval`` offers (datasets and scoring protocols), importable without NumPy or
OpenCV so that the command line starts fast."""

from __future__ import annotations

DATASET_NAMES = (
    "ref-davis",
    "ref-youtube-vos",
    "mevis",
    "revos",
    "avsbench-s4",
    "avsbench-ms3",
    "avss",
    "avss-v2-binary",
)

ALREF_SAM2 = "-alref-sam2"
PROTOCOLS: dict[str, str] = {
    "davis": "Ref-DAVIS17: DAVIS 2017 unsupervised (void excluded, Hungarian matching), mean over anno_0..3",
    "mevis": "MeViS: per-expression mean J and F over all frames, averaged over expressions",
    "revos": "ReVOS: per-expression J, F, R as VISA's eval_revos.py; referring, reasoning, overall means",
    "avsbench-s4": "AVSBench S4: M_J, M_F as the official test script (one video per batch)",
    "avsbench-ms3": "AVSBench MS3: M_J, M_F as the official test script (one video per batch)",
    "avss": "AVSBench-semantic: mIoU and F over 71 classes (masks resized to 224x224)",
    "avss-v2-binary": "AVSS v2 rows, binary: M_J, M_F with AVSBench's functions, one video per batch",
    "avsbench-s4" + ALREF_SAM2: "S4 as AL-Ref-SAM 2's evaluator: per-frame F, empty-GT frames count 0",
    "avsbench-ms3" + ALREF_SAM2: "MS3 as AL-Ref-SAM 2's evaluator: per-frame F, empty-GT frames count 0",
    "avss-v2-binary" + ALREF_SAM2: "AVSS-V2-Binary as AL-Ref-SAM 2's evaluator (per frame)",
}
