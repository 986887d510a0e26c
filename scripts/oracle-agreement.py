#!/usr/bin/env python3
"""Where the recorded oracles disagree, case by case.

usage: scripts/oracle-agreement.py [CASE...]

Compares fixtures/differential/<case>/expected.buildkit.json with
expected.buildah.json: config fields, then tree entries by path. Prints one block
per case ("agree" or the differences), the material for fixtures/differential/README.md.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "differential"


def load(case, oracle):
    path = ROOT / case / f"expected.{oracle}.json"
    return json.loads(path.read_text()) if path.exists() else None


def compare(case):
    bk, ba = load(case, "buildkit"), load(case, "buildah")
    if bk is None or ba is None:
        return ["not recorded by both oracles"]
    out = []
    if bk.get("fails") or ba.get("fails"):
        # A build that must fail: both fail, with the same exit code.
        if bk.get("exit_code") != ba.get("exit_code"):
            out.append(f"exit code: buildkit {bk.get('exit_code')} | buildah {ba.get('exit_code')}")
        return out
    for field in sorted(bk["config"]):
        a, b = bk["config"][field], ba["config"][field]
        if a != b:
            out.append(f"config {field}: buildkit {json.dumps(a)} | buildah {json.dumps(b)}")
    ta = {e["path"]: e for e in bk["tree"]}
    tb = {e["path"]: e for e in ba["tree"]}
    for path in sorted(set(ta) | set(tb)):
        a, b = ta.get(path), tb.get(path)
        if a == b:
            continue
        if a is None:
            out.append(f"{path}: only buildah ({b['type']} {b['mode']})")
        elif b is None:
            out.append(f"{path}: only buildkit ({a['type']} {a['mode']})")
        else:
            diffs = [f"{k} {a.get(k)} | {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            out.append(f"{path}: " + "; ".join(diffs))
    return out


def main():
    cases = sys.argv[1:] or sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_"))
    for case in cases:
        diffs = compare(case)
        print(f"{case}: " + ("agree" if not diffs else f"{len(diffs)} differences"))
        for d in diffs:
            print(f"    {d}")


if __name__ == "__main__":
    main()
