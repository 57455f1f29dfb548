"""Time one CT preprocessing chain in medimg, MONAI and TorchIO on the same series.

    python benchmarks/preprocess.py [--data DIR] [--runs N] [--series PATH]

The chain: stored values -> HU (Rescale Slope/Intercept) -> resample to 1 x 1 x 1 mm (linear) ->
crop to the body -> z-score.  Every tool starts from the same in-memory stored-value array with its
own data type (medimg ``Image``, MONAI ``MetaTensor`` in RAS, TorchIO ``Subject``), so file reading
is not timed.  Each tool gets one untimed warm-up, then the tools take turns for N rounds (so that
load from other work on the machine falls on all of them alike); the table shows each median and
medimg's time divided by the peer's (below 1.0: medimg is faster).  No time is asserted.

What "crop to the body" and "z-score" mean differs a little between the tools, as their users would
write them: medimg crops to its body mask (table and bed left out) and takes the z-score statistics
inside it; MONAI crops to voxels above -500 HU (``CropForeground``, table included) and z-scores
over the whole crop (``NormalizeIntensity``); TorchIO crops to a mask of voxels above -500 HU
(``CropOrPad(mask_name=...)``) and takes the statistics inside that mask (``ZNormalization``).
The output shapes and statistics are printed so the difference is visible.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_root, median, print_table  # noqa: E402

SERIES = "ct/lung-pet-ct-dx-A0001/series-2"
SLOPE, INTERCEPT = 1.0, -1024.0
BODY_HU = -500.0


def stored_image(folder: Path) -> Any:
    """The series as stored values (HU minus the intercept), with its geometry."""
    import medimg

    image = medimg.read(folder)
    stored = ((image.array.astype(np.float32) - INTERCEPT) / SLOPE).astype(np.int16)
    return image.replace(array=stored)


# ---------------------------------------------------------------------------------------- chains
def medimg_chain(image: Any) -> Callable[[], np.ndarray]:
    from medimg import preprocess as pp

    def run() -> np.ndarray:
        hu = pp.to_hu(image, slope=SLOPE, intercept=INTERCEPT)
        iso = pp.resample(hu, 1.0)
        body = pp.crop_to_body(iso)
        return pp.zscore(body).array

    return run


def monai_chain(image: Any) -> Callable[[], np.ndarray]:
    from monai.transforms import (
        Compose,
        CropForeground,
        NormalizeIntensity,
        ScaleIntensityRange,
        Spacing,
    )

    tensor = image.to_metatensor()
    chain = Compose([
        # HU = stored * slope + intercept, as a linear map (no clipping).
        ScaleIntensityRange(a_min=0.0, a_max=1.0, b_min=INTERCEPT, b_max=INTERCEPT + SLOPE,
                            clip=False, dtype=np.float32),
        Spacing(pixdim=(1.0, 1.0, 1.0), mode="bilinear", padding_mode="border"),
        CropForeground(select_fn=lambda x: x > BODY_HU, margin=5),
        NormalizeIntensity(),
    ])

    def run() -> np.ndarray:
        return np.asarray(chain(tensor))

    return run


def torchio_chain(image: Any) -> Callable[[], np.ndarray]:
    import torch
    import torchio as tio

    class BodyMask(tio.Transform):  # type: ignore[misc]
        """Adds a label map of the voxels above -500 HU (TorchIO has no body mask of its own)."""

        def apply_transform(self, subject: tio.Subject) -> tio.Subject:
            ct = subject["ct"]
            subject.add_image(tio.LabelMap(tensor=ct.data > BODY_HU, affine=ct.affine), "body")
            return subject

    data = np.swapaxes(image.array, 0, 2)[np.newaxis].astype(np.float32)  # (1, x, y, z)
    subject = tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(data)),
                                             affine=image.ras_affine))
    chain = tio.Compose([
        tio.Lambda(lambda x: x * SLOPE + INTERCEPT),
        tio.Resample(1.0),
        BodyMask(),
        tio.CropOrPad(mask_name="body"),
        tio.ZNormalization(masking_method="body"),
    ])

    def run() -> np.ndarray:
        return chain(subject)["ct"].data.numpy()

    return run


# ---------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="data folder (default: $MEDIMG_DATA or ../shared/data)")
    parser.add_argument("--series", default=SERIES, help=f"series folder under --data ({SERIES})")
    parser.add_argument("--runs", type=int, default=7, help="timed rounds (default 7)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    image = stored_image(data_root(args.data) / args.series)
    chains = {"medimg": medimg_chain(image), "MONAI": monai_chain(image),
              "TorchIO": torchio_chain(image)}
    outputs = {name: run() for name, run in chains.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in chains}
    for _ in range(args.runs):
        for name, run in chains.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)

    print(f"series: {args.series}  input {image.shape} stored values, spacing "
          f"{tuple(round(float(s), 3) for s in image.spacing)} mm; {args.runs} rounds")
    base = median(times["medimg"])
    rows = []
    for name in chains:
        out = outputs[name]
        mid = median(times[name])
        rows.append([name, f"{mid:.3f}", f"{base / mid:.2f}" if name != "medimg" else "-",
                     "x".join(str(n) for n in out.shape), f"{float(out.mean()):.3f}",
                     f"{float(out.std()):.3f}"])
    print_table(["tool", "median s", "medimg / tool", "output shape", "mean", "std"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
