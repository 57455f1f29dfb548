"""C-STORE throughput: dcmtk ``storescu`` sends the same files to medimg, dcmtk ``storescp`` and Orthanc.

    python benchmarks/cstore.py [--data DIR] [--runs N] [--parallel 1,2,4] [--peers medimg,orthanc,storescp]
    python benchmarks/cstore.py --store-only [--runs N]

Files: the 128 CT files of ``ct/lung-pet-ct-dx-A0001`` and the Part 10 files of the pydicom-data package
in an uncompressed transfer syntax (storescu sends compressed files only in an association that
proposes that one compression), one file per SOP Instance UID (the package holds some instances in
several transfer syntaxes) and only files every receiver accepts (a readable data set with valid UIDs).
storescu runs with ``-R`` (propose only the presentation contexts the files need).

Receivers, each started fresh (empty storage) for every timed send, start-up not timed:

* ``medimg``: ``medimg serve --no-analysis`` (durability on: the answer to a C-STORE is sent after the
  file and its index row are on disk);
* ``storescp``: dcmtk's ``storescp +xa`` writing the files to a folder (no index, no fsync);
* ``Orthanc``: the Debian package as the server tests run it (its SQLite index, its storage area).

dcmtk and Orthanc run with ``TCP_NODELAY=1`` (PITFALLS.md); medimg sets it on its sockets itself.  One
``storescu`` process is one association; with ``--parallel 1,2,4`` the files are dealt round-robin to
that many ``storescu`` processes started at once (storescp serves one association at a time and is only
timed with one).  The receivers take turns, run after run; the table shows the median.

``--store-only`` times :meth:`medimg.store.Store.put_dataset` alone (no network) on the CT data sets,
from 1 and 4 threads, into a fresh store each run: the cost of durability per instance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server"))
from _common import data_root, median, print_table  # noqa: E402
from peers import PEER_ENV, Orthanc, free_port, wait_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


def benchmark_files(data: Path) -> list[Path]:
    """The CT files and the pydicom-data Part 10 files, one per SOP Instance UID, all storable."""
    import pydicom

    from medimg.store.part10 import is_valid_uid

    folders = [data / "ct" / "lung-pet-ct-dx-A0001"]
    try:
        import data_store  # the import name of the pydicom-data distribution

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        print("(pydicom-data is not installed: the CT files only)")
    files, seen = [], set()
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if not p.is_file():
                continue
            with open(p, "rb") as fh:
                if fh.read(132)[128:132] != b"DICM":
                    continue
            try:
                ds = pydicom.dcmread(p)
                _ = ds.PixelData if "PixelData" in ds else None
                uids = (ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID)
            except Exception:
                continue
            if not all(is_valid_uid(str(u)) for u in uids) or ds.SOPInstanceUID in seen:
                continue
            if ds.file_meta.TransferSyntaxUID not in UNCOMPRESSED:
                continue
            seen.add(ds.SOPInstanceUID)
            files.append(p)
    return files


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICKS


# ---------------------------------------------------------------------------------------- receivers
class Receiver:
    name = ""
    aet = ""
    parallel_ok = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.pid = 0

    def stop(self) -> None:
        raise NotImplementedError


class MedimgReceiver(Receiver):
    name, aet = "medimg", "MEDIMG"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.port = free_port()
        self.log = open(folder / "serve.log", "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "medimg", "serve", "--store", str(folder / "store"), "--aet", self.aet,
             "--dicom-port", str(self.port), "--http-port", str(free_port()), "--no-analysis"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        wait_port(self.port, 120, self.proc)
        time.sleep(0.5)  # the HTTP side finishes starting

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


class StorescpReceiver(Receiver):
    name, aet, parallel_ok = "storescp", "STORESCP", False

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.port = free_port()
        (folder / "out").mkdir()
        self.proc = subprocess.Popen(["storescp", "+xa", "-aet", self.aet, "-od", str(folder / "out"),
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=PEER_ENV)
        self.pid = self.proc.pid
        wait_port(self.port, 60, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class OrthancReceiver(Receiver):
    name, aet = "Orthanc", "ORTHANC"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.orthanc = Orthanc(folder, aet=self.aet, dicomweb=False)
        self.port = self.orthanc.dicom_port
        self.pid = self.orthanc.proc.pid

    def stop(self) -> None:
        self.orthanc.stop()


RECEIVERS: dict[str, type[Receiver]] = {
    "medimg": MedimgReceiver, "storescp": StorescpReceiver, "orthanc": OrthancReceiver,
}


def send(receiver: Receiver, groups: list[list[Path]]) -> tuple[float, float]:
    """Run one storescu per group at once; (wall seconds until the last one ends, receiver CPU seconds)."""
    cpu0 = cpu_of(receiver.pid)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["storescu", "-v", "-R", "-aet", "STORESCU", "-aec", receiver.aet, "127.0.0.1",
                               str(receiver.port), *map(str, g)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=PEER_ENV) for g in groups]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    wall = time.perf_counter() - t0
    cpu = cpu_of(receiver.pid) - cpu0
    for p, g, out in zip(procs, groups, outputs, strict=True):
        ok = out.count("Received Store Response (Success)")
        if p.returncode != 0 or ok != len(g):
            raise RuntimeError(f"{receiver.name}: storescu stored {ok} of {len(g)} files "
                               f"(exit {p.returncode}):\n{out[-1500:]}")
    return wall, cpu


def network_benchmark(files: list[Path], runs: int, parallel: list[int], names: list[str]) -> None:
    size = sum(p.stat().st_size for p in files)
    jobs = [(name, n) for n in parallel for name in names if n == 1 or RECEIVERS[name].parallel_ok]
    wall: dict[tuple[str, int], list[float]] = {j: [] for j in jobs}
    cpu: dict[tuple[str, int], list[float]] = {j: [] for j in jobs}
    print(f"{len(files)} files, {size / 1e6:.1f} MB; runs: {runs} (+1 warm-up, median); cores: {os.cpu_count()}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    for run in range(runs + 1):
        for name, n in jobs:
            folder = Path(tempfile.mkdtemp(prefix=f"cstore-{name}-"))
            try:
                receiver = RECEIVERS[name](folder)
                try:
                    w, c = send(receiver, [files[i::n] for i in range(n)])
                finally:
                    receiver.stop()
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if run:  # the first round warms the file cache and the interpreters
                wall[(name, n)].append(w)
                cpu[(name, n)].append(c)
    rows = []
    label = {"medimg": "medimg", "orthanc": "Orthanc", "storescp": "dcmtk storescp"}
    for name, n in jobs:
        med = median(wall[(name, n)])
        rows.append([label[name], str(n), f"{med:7.3f}", f"{min(wall[(name, n)]):7.3f}",
                     f"{len(files) / med:7.0f}", f"{size / 1e6 / med:7.1f}",
                     f"{median(cpu[(name, n)]) / len(files) * 1000:6.2f}"])
    print()
    print_table(["receiver", "assoc", "median s", "min s", "files/s", "MB/s", "recv cpu ms/file"], rows)
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    def rate(name: str, n: int) -> float:
        return len(files) / median(wall[(name, n)])

    print()
    for n in parallel:
        if "medimg" in names and "orthanc" in names:
            print(f"{n} association(s): medimg / Orthanc files/s = {rate('medimg', n) / rate('orthanc', n):.2f}"
                  "  (above 1.0: medimg is faster)")
    if "medimg" in names and "storescp" in names and 1 in parallel:
        print(f"1 association: medimg / storescp files/s = {rate('medimg', 1) / rate('storescp', 1):.2f}"
              "  (storescp writes files only: no index, no fsync)")
    for name in names:
        if name != "storescp" and len(parallel) > 1:
            base = rate(name, parallel[0])
            print(f"{label[name]} scaling: " + ", ".join(f"{n}: {rate(name, n) / base:.2f}x" for n in parallel))


# ---------------------------------------------------------------------------------------- store only
def store_benchmark(data: Path, runs: int) -> None:
    from medimg.store import Store
    from medimg.store.part10 import split_part10

    items = []
    for f in sorted((data / "ct" / "lung-pet-ct-dx-A0001").glob("series-*/*.dcm")):
        raw = f.read_bytes()
        meta, offset = split_part10(raw)
        items.append((raw[offset:], meta["TransferSyntaxUID"]))
    print(f"Store.put_dataset of {len(items)} CT data sets into a fresh store (fsync on), runs: {runs} (median); "
          f"load average before: {os.getloadavg()[0]:.2f}")

    def one(threads: int, duplicates: bool) -> tuple[float, float]:
        """(wall, CPU) seconds per instance; CPU is this process's, all threads, user + system."""
        with tempfile.TemporaryDirectory(prefix="cstore-store-") as folder:
            store = Store(folder)
            try:
                if duplicates:
                    for ds, ts in items:
                        store.put_dataset(ds, ts)
                chunks = [items[i::threads] for i in range(threads)]
                c0, t0 = time.process_time(), time.perf_counter()
                workers = [threading.Thread(target=lambda c=c: [store.put_dataset(ds, ts) for ds, ts in c])
                           for c in chunks]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                return (time.perf_counter() - t0) / len(items), (time.process_time() - c0) / len(items)
            finally:
                store.close()

    cases: dict[str, Callable[[], tuple[float, float]]] = {
        "new instances, 1 thread": lambda: one(1, False),
        "new instances, 4 threads": lambda: one(4, False),
        "duplicates, 1 thread": lambda: one(1, True),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()
    for _ in range(runs):
        for k, fn in cases.items():
            w, c = fn()
            times[k].append(w)
            cpu[k].append(c)
    print_table(["", "median ms/instance", "min ms/instance", "cpu ms/instance"],
                [[k, f"{median(v) * 1000:6.2f}", f"{min(v) * 1000:6.2f}", f"{median(cpu[k]) * 1000:6.2f}"]
                 for k, v in times.items()])
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="data folder (default: $MEDIMG_DATA or ../shared/data)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--parallel", default="1,2,4", help="storescu processes at once (default 1,2,4)")
    parser.add_argument("--peers", default="medimg,orthanc,storescp", help="receivers to time")
    parser.add_argument("--store-only", action="store_true", help="time Store.put_dataset alone")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    data = data_root(args.data)
    if args.store_only:
        store_benchmark(data, args.runs)
        return 0
    names = [n.strip().lower() for n in args.peers.split(",") if n.strip()]
    unknown = set(names) - set(RECEIVERS)
    if unknown:
        parser.error(f"unknown receiver(s): {', '.join(sorted(unknown))}")
    parallel = [int(n) for n in args.parallel.split(",")]
    network_benchmark(benchmark_files(data), args.runs, parallel, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
