"""One-shot GPU check: the book's GPU numbers in one command, everything written (and compressed) to one folder.

On a machine with a GPU (``--device cuda``, the default)::

    python tools/gpu_check.py --grid-seconds 300            # writes into $OUT, else ./gpu_check_out

1. ``benchmarks/bench_step.py --device cuda`` (step cost of Smooth-Distill vs multitask, engine vs
   the authors' loop, the EMA update);
2. ``benchmarks/bench_stack.py --device cuda`` for R = 1, 5, 25 replicas, in fp32, with
   ``--precision auto`` (bf16 on compute capability >= 8.0, fp16 + GradScaler before), with
   ``--fuse-teacher`` and with ``--compile`` (CUDA graphs): the options of ``stack.py`` that are
   "not measured: no GPU" until this runs;
3. every chapter in quick mode through nbval on CUDA (``pytest --nbval-lax book/``);
4. a slice of the full-mode main grid: WISDM, paper protocol, MTL-net, the five methods, seeds 0-4,
   fold 0, replica-stacked (``run --stack``), for at most ``--grid-seconds`` (the runner resumes, so
   every finished run is a complete record; an unfinished stack leaves none);
5. replica stacking checked against unstacked runs on the device: a quick grid (sleepsim,
   Smooth-Distill, seeds 0-1) run with ``--no-stack`` and with ``--stack``, each record's test
   accuracies compared (``stack_check.json``): stacking stays opt-in until this matches;
6. the architecture ablation at the paper's decay (``configs/long_arch.yaml``: LSTM, BiLSTM, GRU,
   AnpoNet, lambda 0.5 and 0) with seeds 0-2, for at most ``--arch-seconds`` (long mode on CUDA);
7. ``out/gpu_check.tar.gz`` of all of it (records, JSON, logs), plus ``out/SUMMARY.txt``.

Data. The device machine gets a copy of the repository but not ``/work/shared``, and a carried
folder is limited (64 MiB) while the shared WISDM subset is ~210 MB. So: ``--pack-data`` (run on a
machine that has ``$SMOOTHDISTILL_DATA``) writes ``tools/gpu_data/wisdm_subset.tar.xz`` (untracked,
not ignored, so it travels with the working tree): the phone and watch accelerometer files of the
first ``--subjects`` subjects that have both (4 subjects: a few MB). On the GPU machine the script
unpacks it into a temporary folder and points ``SMOOTHDISTILL_DATA`` there. Without it (and without
``$SMOOTHDISTILL_DATA``), the grid slice uses ``sleepsim``, the seeded simulator, which needs no files.

``--cpu``: the same steps at toy size on the CPU (bench --quick, the quick grid on sleepsim, no
chapters unless ``--chapters`` is given), to check the script itself without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_TAR = ROOT / "tools" / "gpu_data" / "wisdm_subset.tar.xz"
METHODS = ["multitask", "smooth_distill", "singletask", "born_again", "sd_dropout"]


def log(out: Path, text: str) -> None:
    print(text, flush=True)
    with open(out / "SUMMARY.txt", "a") as f:
        f.write(text + "\n")


def run(cmd: list[str], out: Path, name: str, timeout: float | None = None, env: dict | None = None) -> int:
    """Run ``cmd`` (its own process group), its output in ``out/name.log``; killed after ``timeout``."""
    t0 = time.time()
    with open(out / f"{name}.log", "w") as f:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                             start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGTERM)  # the group we started: the run and its workers
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            rc = -1
    log(out, f"[{name}] rc={rc} ({'time limit reached, ' if rc == -1 else ''}{time.time() - t0:.0f} s): "
             f"{' '.join(cmd)}")
    return rc


def pack_data(subjects: int) -> Path:
    """``tools/gpu_data/wisdm_subset.tar.xz`` from ``$SMOOTHDISTILL_DATA`` (see the module docstring)."""
    src = Path(os.environ.get("SMOOTHDISTILL_DATA", ROOT.parent / "shared" / "data"))
    raw = src / "wisdm-dataset" / "raw"
    if not (raw / "phone" / "accel").is_dir():
        raise SystemExit(f"--pack-data: no WISDM under {src} (set SMOOTHDISTILL_DATA)")
    ids = lambda kind: {p.name.split("_")[1] for p in (raw / kind / "accel").glob("data_*_accel_*.txt")}  # noqa: E731
    both = sorted(ids("phone") & ids("watch"))[:subjects]
    DATA_TAR.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(DATA_TAR, "w:xz") as tar:
        for extra in ("activity_key.txt", "README.txt"):
            if (src / "wisdm-dataset" / extra).exists():
                tar.add(src / "wisdm-dataset" / extra, f"wisdm-dataset/{extra}")
        for kind in ("phone", "watch"):
            for s in both:
                for p in sorted((raw / kind / "accel").glob(f"data_{s}_accel_{kind}.txt")):
                    tar.add(p, f"wisdm-dataset/raw/{kind}/accel/{p.name}")
    print(f"wrote {DATA_TAR} ({DATA_TAR.stat().st_size / 1e6:.1f} MB): subjects {', '.join(both)}")
    return DATA_TAR


def data_env(tmp: Path) -> tuple[dict, str]:
    """(environment, dataset) for the grid slice: the packed WISDM subset, else $SMOOTHDISTILL_DATA's
    WISDM, else sleepsim."""
    if DATA_TAR.exists():
        with tarfile.open(DATA_TAR) as tar:
            tar.extractall(tmp, filter="data")
        return {"SMOOTHDISTILL_DATA": str(tmp)}, "wisdm"
    d = os.environ.get("SMOOTHDISTILL_DATA")
    if d and (Path(d) / "wisdm-dataset" / "raw").is_dir():
        return {}, "wisdm"
    return {}, "sleepsim"


def stack_check(py: str, out: Path, dev: str, env: dict) -> dict:
    """The same quick grid unstacked and stacked on ``dev``; every record's test accuracies side by
    side (``out/stack_check.json``) and the largest difference in points."""
    cfg = out / "gpu_stackcheck.yaml"
    cfg.write_text(json.dumps({"name": "stackcheck", "datasets": ["sleepsim"], "methods": ["smooth_distill"],
                               "seeds": [0, 1], "folds": [0], "description": "tools/gpu_check.py: stacking vs not"}))
    acc = {}
    for flag in ("--no-stack", "--stack"):
        results = out / f"stackcheck{flag.replace('-', '_')}"
        run([py, "-m", "smoothdistill_lib", "run", str(cfg), "--mode", "quick", flag, "--device", dev], out,
            f"stackcheck{flag}", env={**env, "SMOOTHDISTILL_RESULTS": str(results)})
        for path in sorted((results / "stackcheck" / "runs").glob("*.json")):
            rec = json.loads(path.read_text())
            for e in rec["evaluation"]:
                if e["split"] == "test":
                    acc.setdefault(f"{rec['run_id']}/{e['who']}/task{e['task']}", {})[flag] = e["metrics"]["accuracy"]
        shutil.rmtree(results, ignore_errors=True)
    diffs = [abs(v["--stack"] - v["--no-stack"]) for v in acc.values() if len(v) == 2]
    summary = {"device": dev, "values": acc, "compared": len(diffs), "max_abs_diff_points": max(diffs, default=None)}
    (out / "stack_check.json").write_text(json.dumps(summary, indent=1))
    log(out, f"stack check on {dev}: {len(diffs)} test accuracies compared, largest difference "
             f"{summary['max_abs_diff_points']} points (stacking stays opt-in until this is ~0)")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="toy-size dry run on the CPU (checks the script)")
    ap.add_argument("--out", default=None, help="output folder (default $OUT, else ./gpu_check_out)")
    ap.add_argument("--grid-seconds", type=float, default=300.0, help="time limit of the grid slice")
    ap.add_argument("--chapters", default=None, help="glob of chapters for nbval (default: all on CUDA, none with --cpu)")
    ap.add_argument("--arch-seconds", type=float, default=240.0, help="time limit of the architecture grid")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["step", "stack", "chapters", "grid", "stackcheck", "arch"])
    ap.add_argument("--pack-data", action="store_true", help="only write tools/gpu_data/wisdm_subset.tar.xz")
    ap.add_argument("--subjects", type=int, default=4, help="subjects in the packed WISDM subset")
    args = ap.parse_args(argv)
    if args.pack_data:
        pack_data(args.subjects)
        return 0
    out = Path(args.out or os.environ.get("OUT") or "gpu_check_out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    py, cpu = sys.executable, args.cpu
    dev = "cpu" if cpu else "cuda"
    probe = subprocess.run([py, "-c", "import torch; print(torch.__version__, torch.cuda.is_available(), "
                            "torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', "
                            "torch.cuda.get_device_capability(0) if torch.cuda.is_available() else '')"],
                           capture_output=True, text=True)  # fmt: skip
    log(out, f"gpu_check {'--cpu dry run' if cpu else 'on CUDA'}: torch/cuda/device: {probe.stdout.strip()}")
    if not cpu and "True" not in probe.stdout:
        log(out, "no CUDA device: use --cpu for a dry run")
        return 2
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if "step" not in args.skip:
        small = ["--windows", "256", "--epochs", "1", "--repeats", "1", "--rounds", "1", "--steps", "2"] if cpu else []
        run([py, "benchmarks/bench_step.py", "--device", dev, "--threads", "1", "--json", str(out / "bench_step.json"),
             *small], out, "bench_step", env=env)
    if "stack" not in args.skip:
        variants = {"fp32": []} if cpu else {"fp32": [], "auto": ["--precision", "auto"],
                                             "fused": ["--fuse-teacher"], "compiled": ["--compile"]}
        for name, extra in variants.items():
            run([py, "benchmarks/bench_stack.py", "--device", dev, "--threads", "1", *(["--quick"] if cpu else []),
                 "--json", str(out / f"bench_stack_{name}.json"), *extra], out, f"bench_stack_{name}", env=env)
    chapters = args.chapters or (None if cpu else "book/[0-9]*.ipynb")
    if "chapters" not in args.skip and chapters:
        import glob

        books = sorted(glob.glob(str(ROOT / chapters)))
        run([py, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider", *books], out, "chapters",
            env={**env, "SMOOTHDISTILL_MODE": "quick"})
    if "grid" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            denv, dataset = data_env(Path(tmp))
            log(out, f"grid slice on {dataset}" + (" (no WISDM here: see --pack-data)" if dataset == "sleepsim" else ""))
            cfg = out / "gpu_main.yaml"
            cfg.write_text(json.dumps({
                "name": "gpu_main", "datasets": [dataset], "protocols": ["paper"], "models": ["mtlnet"],
                "methods": METHODS, "seeds": [0, 1] if cpu else [0, 1, 2, 3, 4], "folds": [0],
                "description": "tools/gpu_check.py: a slice of the main grid (fold 0), replica-stacked"}))
            run([py, "-m", "smoothdistill_lib", "run", str(cfg), "--mode", "quick" if cpu else "full", "--stack",
                 "--device", dev], out, "grid", timeout=args.grid_seconds,
                env={**env, **denv, "SMOOTHDISTILL_RESULTS": str(out / "results")})
        n = len(list((out / "results" / "gpu_main" / "runs").glob("*.json")))
        log(out, f"grid slice: {n} finished run record(s) in {out / 'results' / 'gpu_main' / 'runs'}")
    if "stackcheck" not in args.skip:
        stack_check(py, out, dev, env)
    if "arch" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            denv, dataset = data_env(Path(tmp))
            cfg = out / "gpu_arch.yaml"
            cfg.write_text(json.dumps({
                "name": "gpu_arch", "datasets": [dataset], "protocols": ["paper"],
                "models": ["anponet", "lstm", "gru", "bilstm"], "methods": ["smooth_distill"], "lams": [0.5, 0.0],
                "seeds": [0, 1, 2], "description": "tools/gpu_check.py: configs/long_arch.yaml with three seeds"}))
            run([py, "-m", "smoothdistill_lib", "run", str(cfg), "--mode", "quick" if cpu else "long", "--device", dev],
                out, "arch", timeout=args.arch_seconds, env={**env, **denv, "SMOOTHDISTILL_RESULTS": str(out / "results")})
    for name in ("step", "stack_fp32"):
        path = out / (f"bench_{name}.log")
        if path.exists():
            log(out, f"--- {path.name}\n" + path.read_text()[-3000:])
    with tarfile.open(out / "gpu_check.tar.gz", "w:gz") as tar:
        for p in sorted(out.iterdir()):
            if p.name != "gpu_check.tar.gz":
                tar.add(p, p.name)
    if (out / "results").exists():
        shutil.rmtree(out / "results")  # inside the tarball: one compressed file comes back
    print(f"wrote {out / 'gpu_check.tar.gz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
