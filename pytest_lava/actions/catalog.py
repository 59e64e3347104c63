"""The job vocabulary: every built-in action with its parameters and rules.

Names, parameters and defaults follow the old Linaro dispatcher (see README "Job format"),
plus ``lava_test_shell`` (Test Definition 1.0) and ``deploy_linaro_kernel`` (2013).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..core.errors import ProblemList
from .spec import SETUP, SUBMIT, TEST, ActionSpec, Param, excludes, non_empty, one_of, requires

URL_SCHEMES = ("http", "https", "file")


def _urls(*keys: str):
    def rule(params: dict[str, Any], problems: ProblemList, path: str) -> None:
        for key in keys:
            value = params.get(key)
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, str) and not _url_ok(v):
                    problems.add(f"{path}.{key}", f"{v!r} is not an http, https or file URL")
    return rule


def _url_ok(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        return False
    return bool(parts.path) if parts.scheme == "file" else bool(parts.netloc)


def _kernel_matrix(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    """Old form ``[deb URL, package prefix]``, or a list of such pairs (one job run per kernel)."""
    km = params.get("kernel_matrix")
    if km is None:
        return
    multi = bool(km) and all(isinstance(e, list) for e in km)
    entries = km if multi else [km]
    for i, entry in enumerate(entries):
        where = f"{path}.kernel_matrix" + (f"[{i}]" if multi else "")
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
            problems.add(where, "must be [kernel .deb URL, package prefix] or a list of such pairs")
            continue
        url, _prefix = entry
        if not _url_ok(url):
            problems.add(where, f"{url!r} is not an http, https or file URL")
        elif not urlsplit(url).path.endswith(".deb"):
            problems.add(where, f"{url!r}: only .deb kernel packages are supported")


def _android_test_custom(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    if "commands" in params and "command_file" in params:
        problems.add(f"{path}.command_file", "cannot be used together with 'commands'")
    elif "commands" not in params and "command_file" not in params:
        problems.add(path, "needs 'commands' or 'command_file'")
    elif "commands" in params and not params["commands"]:
        problems.add(f"{path}.commands", "must not be empty (or give 'command_file')")


def _android_option(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    """``option`` becomes words quoted for the board's shell: it must split like a command line."""
    import shlex

    option = params.get("option")
    if isinstance(option, str):
        try:
            shlex.split(option)
        except ValueError as exc:
            problems.add(f"{path}.option", f"cannot split {option!r} into words: {exc}")


def _android_tests(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    """lava-android-test names from the built-in library (android/library.py)."""
    from ..android.library import known_tests, library_test

    names = [(f"{path}.tests[{i}]", n) for i, n in enumerate(params.get("tests") or [])]
    if isinstance(params.get("test_name"), str):
        names.append((f"{path}.test_name", params["test_name"]))
    for where, name in names:
        if isinstance(name, str) and library_test(name) is None:
            problems.add(where, f"no lava-android-test test {name!r} (built-in: {', '.join(known_tests())})")


def _android_parser(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    from ..android.model import parse_spec
    from ..core.errors import InputError

    if isinstance(params.get("parser"), str):
        try:
            parse_spec(params["parser"])
        except InputError as exc:
            problems.add(f"{path}.parser", exc.problems[0].reason)


def _testdef_repos(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    for i, repo in enumerate(params.get("testdef_repos") or []):
        from ..testdefs.repos import check_entry

        check_entry(repo, problems, f"{path}.testdef_repos[{i}]")
    if not any(params.get(k) for k in ("testdef_urls", "testdef_repos", "testdefs")):
        problems.add(path, "needs one of 'testdef_urls', 'testdef_repos' or 'testdefs'")


def _testdefs(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    """Inline and built-in definitions are checked with the job, before anything touches a board
    (URLs, paths and repositories are fetched at run time)."""
    from ..core.errors import InputError
    from ..testdefs.load import load_builtin, load_inline

    for i, entry in enumerate(params.get("testdefs") or []):
        where = f"{path}.testdefs[{i}]"
        try:
            if isinstance(entry, dict):
                load_inline(entry, where)
            elif isinstance(entry, str) and "://" not in entry and "/" not in entry \
                    and not entry.endswith((".yaml", ".yml", ".json")):
                load_builtin(entry)
        except InputError as exc:
            for p in exc.problems:
                field = f"{where}.{p.path}" if p.path else where
                problems.add(field, p.reason)


def _lava_test_names(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    """lava_test_install's tests: classic or built-in names (unless ``register`` may supply them)."""
    from ..testdefs.classic import check_tests

    check_tests(params, problems, path)


def _lava_test_run_name(params: dict[str, Any], problems: ProblemList, path: str,
                        job: list[tuple[str, dict[str, Any]]]) -> None:
    """lava_test_run's test_name: a classic or built-in name, a path or URL, unless a
    lava_test_install of the job registers definitions (their names are known only once fetched)."""
    if any(command == "lava_test_install" and p.get("register") for command, p in job):
        return
    from ..testdefs.classic import check_name

    check_name(params.get("test_name"), problems, f"{path}.test_name")


def _boot_options(params: dict[str, Any], problems: ProblemList, path: str) -> None:
    """Boot options go to a bootloader or a kernel command line, one per line or word: whatever
    the board type, a control character (newline, carriage return, NUL, escape...) could end that
    line and start a command of the job's own. The board type checks the rest (``name=value``,
    quoting) against the board (``BoardType.check_parameters``)."""
    for i, option in enumerate(params.get("options") or []):
        if not isinstance(option, str):
            continue
        bad = sorted({c for c in option if ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0})
        if bad:
            problems.add(f"{path}.options[{i}]", "must not contain control characters (newline, carriage return, "
                                                 f"NUL...), found {', '.join(repr(c) for c in bad)}")


def _name(fmt: str, key: str):
    return lambda p: fmt.format(p.get(key, "?"))


_TIMEOUT = Param(int, help="seconds for this action (capped by the job timeout)")
_OPTIONS = Param(list, items=str, help="boot options `name=value` (2013)")

BUILTIN: list[ActionSpec] = [
    ActionSpec(
        "deploy_linaro_image", SETUP, default_timeout=18000,
        summary="Write a Linaro test image into the test partitions, from the master image.",
        params={
            "hwpack": Param(str, help="URL of the hardware pack tarball (needs rootfs)"),
            "rootfs": Param(str, help="URL of the root filesystem tarball"),
            "image": Param(str, help="URL of a prebuilt .img (.gz/.bz2/.xz); excludes hwpack"),
            "kernel_matrix": Param(list, help="[kernel .deb URL, package prefix], or a list of them"),
            "use_cache": Param(bool, default=True, help="use the host download cache"),
            "rootfstype": Param(str, default="ext4", help="filesystem for testrootfs"),
            "bootloader": Param(str, default="u_boot", help="bootloader of the image"),
            "hwpack_sha256": Param(str, help="expected SHA-256 of the hwpack"),
            "rootfs_sha256": Param(str, help="expected SHA-256 of the rootfs"),
            "image_sha256": Param(str, help="expected SHA-256 of the image"),
            "timeout": _TIMEOUT,
        },
        rules=(requires("hwpack", "rootfs"), excludes("image", "hwpack"), excludes("image", "rootfs"),
               one_of("image", "rootfs"), excludes("image", "kernel_matrix"),
               _urls("hwpack", "rootfs", "image"), _kernel_matrix),
    ),
    ActionSpec(
        "deploy_linaro_android_image", SETUP, default_timeout=3600,
        summary="Deploy Android boot/system/data tarballs into the test partitions.",
        params={
            "boot": Param(str, required=True, help="URL of boot.tar.bz2"),
            "system": Param(str, required=True, help="URL of system.tar.bz2"),
            "data": Param(str, required=True, help="URL of userdata.tar.bz2"),
            "pkg": Param(str, help="a second boot tarball laid over the first"),
            "use_cache": Param(bool, default=True),
            "rootfstype": Param(str, default="ext4", help="filesystem for system and data"),
            "boot_sha256": Param(str), "system_sha256": Param(str), "data_sha256": Param(str),
            "pkg_sha256": Param(str),
            "timeout": _TIMEOUT,
        },
        rules=(_urls("boot", "system", "data", "pkg"),),
    ),
    ActionSpec(
        "deploy_linaro_kernel", SETUP, default_timeout=1200,
        summary="Direct kernel boot: kernel, ramdisk, dtb and rootfs given to the board (2013).",
        params={
            "kernel": Param(str, required=True, help="URL of the kernel image"),
            "ramdisk": Param(str, help="URL of the initramfs"),
            "dtb": Param(str, help="URL of the device tree blob"),
            "rootfs": Param(str, help="URL of a root filesystem image"),
            "firmware": Param(str), "bootloader": Param(str, default="u_boot"),
            "rootfstype": Param(str, default="ext4"), "bootloadertype": Param(str, default="u_boot"),
            "timeout": _TIMEOUT,
        },
        rules=(_urls("kernel", "ramdisk", "dtb", "rootfs", "firmware"),),
    ),
    ActionSpec("boot_master_image", SETUP, default_timeout=900,
               summary="Power-cycle the board and reach the master image's shell.",
               params={"timeout": _TIMEOUT}),
    ActionSpec("boot_linaro_image", SETUP, default_timeout=900,
               summary="Reboot into the deployed test image through the bootloader.",
               params={"options": _OPTIONS, "timeout": _TIMEOUT}, rules=(_boot_options,)),
    ActionSpec("boot_linaro_android_image", SETUP, default_timeout=1800,
               summary="Reboot into the deployed Android image and connect adb.",
               params={"options": _OPTIONS, "timeout": _TIMEOUT}, rules=(_boot_options,)),
    ActionSpec(
        "add_apt_repository", SETUP, default_timeout=600,
        summary="Add apt sources (ppa:... or deb ... lines) to the test root filesystem.",
        params={"arg": Param(list, required=True, items=str, help="ppa:NAME or 'deb URI DIST COMPONENTS'"),
                "timeout": _TIMEOUT},
        rules=(non_empty("arg"),),
    ),
    ActionSpec("android_install_binaries", SETUP, default_timeout=600,
               summary="Unpack the device's android_binary_drivers tarball into /system.",
               params={"timeout": _TIMEOUT}),
    ActionSpec(
        "lava_test_install", SETUP, default_timeout=2400,
        summary="Install test definitions and the device-side runner into the test image.",
        result_name=lambda p: "lava_test_install",
        params={
            "tests": Param(list, required=True, items=str, help="test definition names"),
            "install_python": Param(list, items=str, help="pip requirements"),
            "install_deb": Param(list, items=str, help="Debian packages"),
            "register": Param(list, items=str, help="URLs of extra test definitions"),
            "timeout": _TIMEOUT,
        },
        rules=(non_empty("tests"), _urls("register"), _lava_test_names),
    ),
    ActionSpec(
        "lava_test_run", TEST, default_timeout=1200,
        summary="Run an installed lava-test definition on the test image; each test case is a result.",
        result_name=_name("lava_test_run ({})", "test_name"), item_label=lambda p: str(p.get("test_name", "")),
        params={"test_name": Param(str, required=True), "test_options": Param(str), "timeout": _TIMEOUT},
        job_rules=(_lava_test_run_name,),
    ),
    ActionSpec(
        "lava_test_shell", TEST, default_timeout=1200,
        summary="Run Lava-Test Test Definition 1.0 YAML files on the test image.",
        result_name=lambda p: "lava_test_shell",
        item_label=lambda p: _shell_label(p),
        params={
            "testdef_urls": Param(list, items=str, help="URLs or paths of YAML test definitions"),
            "testdef_repos": Param(list, items=dict, help="[{git-repo, revision, testdef, parameters}] or LAVA "
                                   "v2's [{repository, from: git, revision, path, name, parameters}]"),
            "testdefs": Param(list, items=(str, dict), help="built-in names or inline definitions"),
            "timeout": _TIMEOUT,
        },
        rules=(_testdef_repos, _testdefs),
    ),
    ActionSpec(
        "lava_android_test_install", SETUP, default_timeout=2400,
        summary="Install lava-android-test tests (built-in library) on the Android board over adb.",
        params={"tests": Param(list, required=True, items=str), "option": Param(str), "timeout": _TIMEOUT},
        rules=(non_empty("tests"), _android_tests, _android_option),
    ),
    ActionSpec(
        "lava_android_test_run", TEST, default_timeout=1200,
        summary="Run a lava-android-test test over adb.",
        result_name=_name("lava_android_test_run ({})", "test_name"),
        item_label=lambda p: str(p.get("test_name", "")),
        params={"test_name": Param(str, required=True), "option": Param(str), "timeout": _TIMEOUT},
        rules=(_android_tests, _android_option),
    ),
    ActionSpec(
        "lava_android_test_run_custom", TEST, default_timeout=1200,
        summary="Run custom shell commands on the Android board over adb and parse them.",
        result_name=lambda p: (f"lava_android_test_run_custom (commands=[{','.join(p['commands'])}])"
                               if "commands" in p else
                               f"lava_android_test_run_custom (command-file={p.get('command_file')})"),
        item_label=lambda p: "custom",
        params={"commands": Param(list, items=str), "command_file": Param(str),
                "parser": Param(str, help="regex with named groups"), "timeout": _TIMEOUT},
        rules=(_android_test_custom, _urls("command_file"), _android_parser),
    ),
    ActionSpec(
        "submit_results", SUBMIT, default_timeout=600,
        summary="Submit the result bundle to a dashboard (always runs, at the end).",
        params={"server": Param(str, required=True, help="XML-RPC endpoint or SQUAD URL"),
                "stream": Param(str, help="bundle stream, e.g. /anonymous/lab/"),
                "token": Param(str, secret=True, help="auth token (masked everywhere)"),
                "result_disk": Param(str, default="testrootfs"), "timeout": _TIMEOUT},
    ),
    ActionSpec(
        "submit_results_on_host", SUBMIT, default_timeout=600,
        summary="Same as submit_results (the old dispatcher made them one implementation).",
        params={"server": Param(str, required=True), "stream": Param(str),
                "token": Param(str, secret=True), "result_disk": Param(str, default="testrootfs"),
                "timeout": _TIMEOUT},
    ),
]


def _shell_label(p: dict[str, Any]) -> str:
    names: list[str] = []
    for url in p.get("testdef_urls") or []:
        names.append(url.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0])
    for repo in p.get("testdef_repos") or []:
        if isinstance(repo, dict):
            names.append(str(repo.get("name") or repo.get("path") or repo.get("testdef", "lavatest.yaml"))
                         .rsplit("/", 1)[-1].rsplit(".", 1)[0])
    for d in p.get("testdefs") or []:
        names.append(d if isinstance(d, str) else str(d.get("metadata", {}).get("name", "inline"))
                     if isinstance(d.get("metadata"), dict) else "inline")
    return "+".join(names) or "shell"


__all__ = ["BUILTIN", "SETUP", "SUBMIT", "TEST"]
