"""Benchmark: `pytest --lava-validate` on 100 job files, against pytest's own start-up.

Generates 100 realistic jobs (half JSON in the old dispatcher's spelling, half YAML; 6-10 actions
each: Ubuntu hwpack+rootfs, prebuilt image, Android, lava_test_shell, kernel_matrix) and a lab of
12 boards in both device layouts, in a temporary directory. Then, several times in one run and
interleaved so machine load hits both alike:

* pytest start-up: `pytest --version` and `pytest --co -q` in an empty directory;
* validation: `pytest --lava-validate --lava-devices lab --lava-job ...` with all 100 jobs
  (YAML lab and old INI lab).

Prints the medians and, last, `validate 100 jobs: <x> s beyond pytest start-up (<y> ms/job)`,
where the start-up is the faster of the two baselines (the conservative choice).
Run: `python benchmarks/validate.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

JOBS = 100
SNAP = "http://snapshots.linaro.example.org"
RESULTS = {"command": "submit_results",
           "parameters": {"server": "http://validation.example.org/RPC2/", "stream": "/anonymous/lab/"}}


def _ubuntu(rng: random.Random, board: str) -> list[dict]:
    tests = rng.sample(["stream", "ltp", "posixtestsuite", "pwrmgmt", "gtkperf", "busybox"], rng.randint(2, 3))
    deploy: dict = {"hwpack": f"{SNAP}/hwpack_linaro-{board}_2013{rng.randint(1000, 1231)}_armhf.tar.gz",
                    "rootfs": f"{SNAP}/linaro-raring-developer-2013{rng.randint(1000, 1231)}.tar.gz"}
    if rng.random() < 0.2:
        deploy["kernel_matrix"] = [f"{SNAP}/linux-image-3.{rng.randint(8, 10)}.0-1-linaro-omap_1_armhf.deb",
                                   "linux-image"]
    actions = [{"command": "deploy_linaro_image", "parameters": deploy,
                "metadata": {"rootfs.type": "ubuntu", "rootfs.build": str(rng.randint(1, 400))}},
               {"command": "add_apt_repository", "parameters": {"arg": ["ppa:linaro-maintainers/tools"]}},
               {"command": "lava_test_install", "parameters": {"tests": tests, "timeout": 2400}},
               {"command": "boot_linaro_image"}]
    actions += [{"command": "lava_test_run", "parameters": {"test_name": t, "timeout": rng.choice([600, 1800, -1])}}
                for t in tests]
    return [*actions, RESULTS]


def _image_shell(rng: random.Random, board: str) -> list[dict]:
    urls = [f"http://git.example.org/testdefs/{n}.yaml" for n in
            rng.sample(["smoke", "device-tree", "perf", "usb", "network", "pm-qa", "kselftest"], rng.randint(3, 6))]
    return [{"command": "deploy_linaro_image", "parameters": {"image": f"{SNAP}/{board}-2013.img.gz"}},
            {"command": "boot_linaro_image", "parameters": {"options": ["boot_cmds=boot_cmds"]}},
            *({"command": "lava_test_shell", "parameters": {"testdef_urls": [u], "timeout": 900}} for u in urls),
            {"command": "submit_results_on_host", "parameters": RESULTS["parameters"]}]


def _android(rng: random.Random, board: str) -> list[dict]:
    build = f"{SNAP}/android/{board}/{rng.randint(100, 999)}"
    tests = rng.sample(["0xbench", "monkey", "glmark2", "v8", "skia", "mmtest"], rng.randint(2, 4))
    return [{"command": "deploy_linaro_android_image",
             "parameters": {"boot": f"{build}/boot.tar.bz2", "system": f"{build}/system.tar.bz2",
                            "data": f"{build}/userdata.tar.bz2"},
             "metadata": {"rootfs.type": "android"}},
            {"command": "android_install_binaries"},
            {"command": "boot_linaro_android_image"},
            {"command": "lava_android_test_install", "parameters": {"tests": tests}},
            *({"command": "lava_android_test_run", "parameters": {"test_name": t}} for t in tests),
            {"command": "lava_android_test_run_custom", "parameters": {"commands": ["getprop", "ls /system"]}},
            RESULTS]


FLOWS = {"panda": (_ubuntu, _image_shell, _android), "beagle-xm": (_ubuntu, _image_shell),
         "origen": (_ubuntu, _android)}


def make_jobs(directory: Path, rng: random.Random) -> list[Path]:
    directory.mkdir()
    paths = []
    for i in range(JOBS):
        device_type = rng.choice(sorted(FLOWS))
        actions = rng.choice(FLOWS[device_type])(rng, device_type)[:10]
        if actions[-1]["command"] not in ("submit_results", "submit_results_on_host"):
            actions[-1] = RESULTS
        job = {"job_name": f"{device_type}-{i:03d}", "timeout": rng.choice([3600, 18000, 36000]),
               "actions": actions}
        if rng.random() < 0.5:
            job["target"] = f"{device_type}{rng.randint(1, 4):02d}"
        else:
            job["device_type"] = device_type
        if rng.random() < 0.3:
            job.update(tags=["nightly", device_type], priority="medium", logging_level="DEBUG")
        if i % 2:
            path = directory / f"job{i:03d}.json"
            path.write_text(json.dumps(job, indent=2))
        else:
            path = directory / f"job{i:03d}.yaml"
            path.write_text(yaml.safe_dump(job, sort_keys=False))
        assert 6 <= len(actions) <= 10, (path, len(actions))
        paths.append(path)
    return paths


def make_labs(root: Path) -> tuple[Path, Path]:
    lab, old = root / "lab", root / "old-lab"
    (lab / "device-types").mkdir(parents=True)
    (old / "device-types").mkdir(parents=True)
    (old / "devices").mkdir()
    (lab / "device-defaults.yaml").write_text("host_address: 192.168.1.10\npower_timeout: 30\n")
    (old / "device-defaults.conf").write_text("connection_command = conmux-console %(hostname)s\n"
                                              "hard_reset_command = pdu-reset %(hostname)s\n")
    for device_type in FLOWS:
        (lab / "device-types" / f"{device_type}.yaml").write_text(yaml.safe_dump({
            "board_type": "master", "bootloader_prompt": f"{device_type} # ",
            "boot_cmds": ["mmc init", "mmc part 0", "setenv bootcmd 'fatload mmc 0:3 0x80200000 uImage; bootm'",
                          "boot"],
            "boot_cmds_android": ["mmc init", "boot"], "partitions": {"testboot": "/dev/mmcblk0p3"}}))
        (old / "device-types" / f"{device_type}.conf").write_text(
            "client_type = master\nboot_cmds = mmc init,\n    mmc part 0,\n"
            "    setenv bootcmd \"'fatload mmc 0:3 0x80200000 uImage; bootm'\",\n    boot\n"
            f"bootloader_prompt = {device_type} #\nlmc_dev_arg = %(device_type)s\n")
        for n in range(1, 5):
            name = f"{device_type}{n:02d}"
            (lab / f"{name}.yaml").write_text(f"device_type: {device_type}\nconnection: socket://127.0.0.1:70{n:02d}\n")
            (old / "devices" / f"{name}.conf").write_text(f"device_type = {device_type}\n")
    return lab, old


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 5):  # 5: no tests collected (the empty directory)
        sys.exit(f"benchmark run failed ({proc.returncode}): {' '.join(argv[:8])} ...\n{proc.stdout[-3000:]}"
                 f"\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="repetitions of each measurement (default 7)")
    parser.add_argument("--seed", type=int, default=2013)
    args = parser.parse_args()
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    with tempfile.TemporaryDirectory(prefix="lava-bench-") as tmp:
        root = Path(tmp)
        jobs = make_jobs(root / "jobs", random.Random(args.seed))
        lab, old = make_labs(root)
        (root / "empty").mkdir()
        job_args = [a for j in jobs for a in ("--lava-job", str(j.relative_to(root)))]
        runs = {
            "pytest --version": (pytest + ["--version"], root / "empty"),
            "pytest --co -q (empty dir)": (pytest + ["--co", "-q"], root / "empty"),
            "validate 100 jobs, YAML lab": (pytest + ["--lava-validate", "--lava-devices", "lab", *job_args], root),
            "validate 100 jobs, INI lab": (pytest + ["--lava-validate", "--lava-devices", "old-lab", *job_args], root),
        }
        actions = sum(len((json.loads if j.suffix == ".json" else yaml.safe_load)(j.read_text())["actions"])
                      for j in jobs)
        print(f"{len(jobs)} jobs ({sum(j.suffix == '.json' for j in jobs)} JSON, "
              f"{sum(j.suffix == '.yaml' for j in jobs)} YAML), {actions} actions; 12 boards; "
              f"{args.repeat} repetitions; python {sys.version.split()[0]}")
        for argv, cwd in runs.values():  # warm the page cache and .pyc files
            timed(argv, cwd)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, (argv, cwd) in runs.items():
                samples[name].append(timed(argv, cwd))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        print(f"  {name:<30} median {medians[name] * 1000:7.1f} ms  (min {min(values) * 1000:.1f}, "
              f"max {max(values) * 1000:.1f})")
    startup = min(medians["pytest --version"], medians["pytest --co -q (empty dir)"])
    for lab_name in ("YAML", "INI"):
        extra = medians[f"validate 100 jobs, {lab_name} lab"] - startup
        print(f"  {lab_name} lab: {extra:.3f} s beyond start-up ({extra / JOBS * 1000:.2f} ms/job)")
    extra = medians["validate 100 jobs, YAML lab"] - startup
    print(f"validate 100 jobs: {extra:.3f} s beyond pytest start-up ({extra / JOBS * 1000:.2f} ms/job)")


if __name__ == "__main__":
    main()
