#!/usr/bin/env python3
"""The house's structure, checked from the source: no import circle between
files of src/ (a path through `use crate::`/`super::` items or inline, not a
parent naming its own children), no function past 80 lines, and no file
past 600 lines before its tests.

    python3 scripts/check-structure.py          # what the test command runs

It fails on any finding: there is no list of exceptions (the thirteen long
functions and three circles it found when it came in are worked off).
"""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")
LIMIT = 80
FILE_LIMIT = 600

# module path (tuple) -> file
modules = {}
for root, _, files in os.walk(SRC):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(root, f)
        rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
        if rel[-1] in ("mod", "lib", "main"):
            rel = rel[:-1]
        modules[tuple(rel)] = path

def module_of(path):
    for m, p in modules.items():
        if p == path:
            return m

def resolve(base, segments):
    """The longest module prefix of base+segments that is a file."""
    full = list(base) + segments
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in modules:
            return tuple(full[:n]), full[n:]
    return None, full

def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE = re.compile(r"\buse\s+(crate|super)::([^;]+);", re.S)

def expand(tree):
    """A use tree's leaf paths: a::{b, c::{d}} -> a::b, a::c::d."""
    tree = tree.strip()
    m = re.match(r"^([A-Za-z0-9_:]*?)(?:::)?\{(.*)\}$", tree, re.S)
    if not m:
        return [tree.split(" as ")[0].strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{": depth += 1
        if ch == "}": depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur); cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if not p.strip():
            continue
        for leaf in expand(p):
            out.append(f"{prefix}::{leaf}" if prefix else leaf)
    return out

edges = defaultdict(set)
for mod, path in modules.items():
    text = strip_comments(open(path).read())
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    refs = []
    for kind, tree in USE.findall(text):
        for leaf in expand(tree):
            refs.append((kind, [s for s in leaf.split("::") if s and s != "self"]))
    for kind, rest in PATH.findall(USE.sub("", text)):
        refs.append((kind, [s for s in rest.split("::") if s]))
    for kind, segs in refs:
        if kind == "crate":
            base = ()
        else:
            # `super` in a/b.rs and in a/b/mod.rs is a.
            base = mod[:-1]
        target, _ = resolve(base, segs)
        if target is None or target == mod:
            continue
        # A parent naming its own children (re-exports, mod items) is not an edge.
        if target[:len(mod)] == mod and len(target) > len(mod):
            continue
        edges[mod].add(target)

def cycles():
    found, index, low, stack, on = [], {}, {}, [], set()
    counter = [0]
    def strong(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                found.append(comp)
    sys.setrecursionlimit(10000)
    for v in list(modules):
        if v not in index:
            strong(v)
    return found

def long_functions(limit=LIMIT):
    out = []
    for path in modules.values():
        lines = open(path).read().split("\n")
        i = 0
        while i < len(lines):
            m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)", lines[i])
            if m and not lines[i].rstrip().endswith(";"):
                depth, started, j = 0, False, i
                while j < len(lines):
                    code = re.sub(r"//.*", "", lines[j])
                    code = re.sub(r"b?'(\\.|[^'\\])'", "''", code)
                    code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
                    depth += code.count("{") - code.count("}")
                    if code.count("{"): started = True
                    if started and depth <= 0:
                        break
                    j += 1
                if j - i + 1 > limit:
                    out.append((j - i + 1, rel(path), m.group(6), i + 1))
                i += 1
            else:
                i += 1
    return sorted(out, reverse=True)

def rel(path):
    return os.path.relpath(path, ROOT)


def long_files(limit=FILE_LIMIT):
    """Files whose code before `#[cfg(test)] mod tests` passes the limit."""
    out = []
    for path in modules.values():
        code = re.split(r"\n#\[cfg\(test\)\]\s*mod tests", open(path).read())[0]
        n = code.count("\n") + 1
        if n > limit:
            out.append((n, rel(path)))
    return sorted(out, reverse=True)


def main():
    problems = []
    for comp in cycles():
        problems.append("import circle: " + " <-> ".join(sorted(rel(modules[m]) for m in comp)))
    for n, path, fn, line in long_functions():
        problems.append(f"{path}:{line} {fn}: {n} lines (at most {LIMIT})")
    for n, path in long_files():
        problems.append(f"{path}: {n} lines before its tests (at most {FILE_LIMIT})")
    for p in problems:
        print(p)
    print(f"structure: {len(problems)} problems" if problems
          else f"structure: {len(modules)} files, no import circle, no function past {LIMIT} lines, no file past {FILE_LIMIT}")
    return 1 if problems else 0


sys.exit(main())
