#!/usr/bin/env python3
"""Per-crate instructions per request of one callgrind dump against another.

    callgrind_crates.py BASE.out BASE_REQUESTS SUBJECT.out SUBJECT_REQUESTS [TOP]

Runs `callgrind_annotate --inclusive=no` (self cost of every function) on both dumps, groups
the functions by the crate their source file belongs to (a crates.io crate without its
version, a standard-library crate, a workspace crate; `???` functions by their object file,
e.g. libc), divides by each run's requests and prints the crates whose cost per request
differs most, largest extra first, with the three costliest functions of each.
Used by benches/instructions.sh.
"""
import collections
import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?):(.*?)(?:\s+\[(.*)\])?\s*$")


def crate_of(path, obj, func=""):
    m = re.search(r"/registry/src/[^/]+/([A-Za-z0-9_\-]+?)-\d+\.\d+[^/]*/", path)
    if m:
        return m.group(1)
    m = re.search(r"/rustc/[0-9a-f]+/library/([a-z_]+)/", path) or re.search(r"/lib/rustlib/src/rust/library/([a-z_]+)/", path)
    if m:
        # Standard-library code inlined into a function of another crate counts for that crate.
        owner = re.match(r"<*([A-Za-z0-9_]+)::", func)
        if owner and owner.group(1) not in ("core", "alloc", "std"):
            return owner.group(1).replace("_", "-").replace("authflow-", "authflow-")
        return "std:" + m.group(1)
    for part, name in (("gateway/src/", "authflow-gateway"), ("shared/src/", "authflow-shared"),
                       ("auth/src/", "authflow-auth"), ("benches/", "bench binary"), ("src/main.rs", "authflow")):
        if path.startswith(part) or "/" + part in path:
            return name
    if path == "???" or path.startswith("./"):
        return "libc" if "libc.so" in obj or path.startswith("./") else (obj.rsplit("/", 1)[-1] or "???")
    return path.split("/")[1] if path.startswith("/") else path


def profile(dump):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", dump],
                         capture_output=True, text=True, check=True).stdout
    crates = collections.Counter()
    fns = collections.defaultdict(collections.Counter)
    started = False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started or line.startswith("---"):
            continue
        if not line.strip():
            break
        m = LINE.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        path, func, obj = m.group(2), m.group(3), m.group(4) or ""
        crate = crate_of(path, obj, func)
        crates[crate] += ir
        fns[crate][func] += ir
    return crates, fns


def main():
    base, base_n, subj, subj_n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 14
    bc, bf = profile(base)
    sc, sf = profile(subj)
    rows = []
    for crate in set(bc) | set(sc):
        d = sc[crate] / subj_n - bc[crate] / base_n
        rows.append((d, crate))
    rows.sort(reverse=True)
    total = sum(sc.values()) / subj_n - sum(bc.values()) / base_n
    print(f"| crate | extra / request | its costliest functions (extra / request) |")
    print(f"| --- | ---: | --- |")
    for d, crate in rows[:top]:
        fd = []
        for f in set(sf[crate]) | set(bf[crate]):
            fd.append((sf[crate][f] / subj_n - bf[crate][f] / base_n, f))
        fd.sort(reverse=True)
        names = "; ".join(f"`{short(f)}` {x:+,.0f}" for x, f in fd[:3] if abs(x) >= 50)
        print(f"| {crate} | {d:+,.0f} | {names} |")
    rest = total - sum(d for d, _ in rows[:top])
    print(f"| (every other crate) | {rest:+,.0f} | |")
    print(f"| **total** | **{total:+,.0f}** | |")


def short(f):
    f = re.sub(r"<[^<>]*>", "", f) if len(f) > 90 else f
    return f[-90:].replace("|", "\\|")


if __name__ == "__main__":
    main()
