#!/usr/bin/env python3
"""Fails if anna-kvs's modules import each other in a cycle.

    python3 anna-kvs/scripts/module-cycles.py            # checks, prints the module graph
    python3 anna-kvs/scripts/module-cycles.py --quiet    # checks, prints only cycles
    python3 anna-kvs/scripts/module-cycles.py --src DIR  # another checkout's anna-kvs/src

Every file under src/ is a module. Each reference to another module (`use crate::a::b`,
`super::x`, a relative `use child::Y` in a mod.rs, or an inline `crate::a::f()` path) is an
edge; a name re-exported by a mod.rs (`pub use child::Item`) resolves to the module defining
it. Edges are compared level by level: a reference from `a::x` to `b::y` is the edge `a -> b`
among the crate's top-level modules, one from `node::driver` to `node::handle` the edge
`driver -> handle` among node's children. A child using its parent (or a parent its child) is
containment, not an edge. Binaries (src/bin) sit on top and are left out.
"""

import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def source_dir():
    if "--src" in sys.argv:
        return sys.argv[sys.argv.index("--src") + 1]
    return SRC


def module_files():
    """{module path tuple: file} for every module of the library."""
    modules = {}
    src = source_dir()
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "bin"]
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, name), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib"):
                rel = rel[:-1]
            modules[tuple(rel)] = os.path.join(root, name)
    return modules


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"\s+as\s+\w+$", "", tree)]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return [p for part in parts if part.strip() for p in expand_use(prefix + part.strip())]


def main():
    quiet = "--quiet" in sys.argv
    modules = module_files()
    texts = {m: strip_comments(open(f, encoding="utf-8").read()) for m, f in modules.items()}

    # Names re-exported by a module from one of its children: (module, name) -> child module.
    reexports = {}
    for module, text in texts.items():
        for stmt in re.findall(r"\bpub\s+use\s+([^;]+);", text):
            for path in expand_use(stmt):
                segs = path.split("::")
                child = module + (segs[0],)
                if child in modules:
                    target = child + tuple(segs[1:-1])
                    while target not in modules:
                        target = target[:-1]
                    reexports[(module, segs[-1])] = target

    def resolve(module, path):
        segs = path.split("::")
        if segs[0] == "crate":
            base, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            base = module
            while segs and segs[0] in ("super", "self"):
                base = base[:-1] if segs[0] == "super" else base
                segs = segs[1:]
        elif module + (segs[0],) in modules:
            base = module
        else:
            return None  # another crate, or a local name
        target = base
        for seg in segs:
            if target + (seg,) in modules:
                target += (seg,)
            else:
                target = reexports.get((target, seg), target)
                break
        return target

    edges = {}  # parent module -> set of (child, child) edges among its children
    for module, text in texts.items():
        paths = [p for stmt in re.findall(r"\buse\s+([^;]+);", text) for p in expand_use(stmt)]
        paths += re.findall(r"(?<![\w:$])((?:crate|super)(?:::\w+)+)", text)
        for path in paths:
            target = resolve(module, path)
            if target is None or target == module:
                continue
            common = 0
            while common < min(len(module), len(target)) and module[common] == target[common]:
                common += 1
            if common == len(module) or common == len(target):
                continue  # parent and child: containment
            parent = module[:common]
            edges.setdefault(parent, set()).add((module[common], target[common]))

    cycles = []
    for parent, pairs in sorted(edges.items()):
        graph = {}
        for a, b in pairs:
            graph.setdefault(a, set()).add(b)
        name = "::".join(parent) or "crate"
        if not quiet:
            for a in sorted(graph):
                print(f"{name}: {a} -> {', '.join(sorted(graph[a]))}")
        state = {}

        def visit(node, stack):
            state[node] = "open"
            for nxt in sorted(graph.get(node, ())):
                if state.get(nxt) == "open":
                    cycles.append(f"{name}: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
                elif nxt not in state:
                    visit(nxt, stack + [nxt])
            state[node] = "done"

        for node in sorted(graph):
            if node not in state:
                visit(node, [node])
    for cycle in cycles:
        print(f"import cycle: {cycle}")
    if cycles:
        sys.exit(1)
    print(f"no import cycles among {len(modules)} modules of anna-kvs")


if __name__ == "__main__":
    main()
