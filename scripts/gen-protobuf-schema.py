#!/usr/bin/env python3
"""Writes apiserver/src/protobuf/messages.txt: the wire layout (field
numbers, Rust field names, types) of every Kubernetes protobuf message, read
from the k8s-pb crate's generated Rust sources (prost attributes).

The API server decodes protobuf request bodies with it; JSON field names
come from the k8s-openapi schemas at run time. Rerun after changing the
k8s-pb version:

    scripts/gen-protobuf-schema.py [--check] [PATH-TO-k8s-pb-SOURCES]

With --check it only compares (exit 1 if messages.txt is out of date).

Without a path it looks in ~/.cargo/registry/src/*/k8s-pb-<version>/ for
the version in Cargo.lock.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "apiserver", "src", "protobuf", "messages.txt")


CHECK = "--check" in sys.argv
ARGS = [a for a in sys.argv[1:] if a != "--check"]


def k8s_pb_dir():
    if ARGS:
        return ARGS[0]
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    version = re.search(r'name = "k8s-pb"\nversion = "([^"]+)"', lock).group(1)
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = glob.glob(os.path.join(home, "registry", "src", "*", f"k8s-pb-{version}"))
    if not found:
        sys.exit(f"k8s-pb {version} sources not found under {home}/registry/src (cargo fetch first)")
    return found[0]


def package_of(module):
    """k8s-pb module path -> protobuf/OpenAPI package name."""
    first, *rest = module
    first = first.replace("_", "-")
    return ".".join(["io", "k8s", first] + rest)


def resolve(module, rust_type):
    """A Rust type path as written in `module` -> (package, message)."""
    path = rust_type.split("::")
    here = list(module)
    while path and path[0] == "super":
        here.pop()
        path.pop(0)
    return package_of(here + path[:-1]), path[-1]


KINDS = {"string": "string", "int32": "int32", "int64": "int64", "bool": "bool", "double": "double"}


def inner_type(text):
    """The message type inside Option<...>, Vec<...>, Box<...>."""
    text = re.sub(r"\s+", "", text)
    for wrapper in ["::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"]:
        while text.startswith(wrapper):
            text = text[len(wrapper):-1].rstrip(",")
    return text


def map_value_type(text):
    text = re.sub(r"\s+", "", text)
    inner = text[text.index("<") + 1 : -1]
    # key is always String here; the value follows the first comma at depth 0
    depth = 0
    for i, c in enumerate(inner):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return inner[i + 1 :].rstrip(",")
    raise ValueError(text)


def parse(path, module, out):
    lines = open(path).read().split("\n")
    i = 0
    current = None
    while i < len(lines):
        line = lines[i].strip()
        m = re.match(r"pub struct (\w+) \{", line)
        if m:
            current = m.group(1)
            out.append(f"message {package_of(module)}.{current}")
            i += 1
            continue
        if line == "}":
            current = None
        m = re.match(r"#\[prost\((.*)\)\]$", line)
        if m and current:
            attrs = m.group(1)
            tag = re.search(r'tag = "(\d+)"', attrs).group(1)
            # The field: `pub name: Type,` possibly over several lines.
            j = i + 1
            while lines[j].strip().startswith("///") or lines[j].strip().startswith("#["):
                j += 1
            decl = lines[j].strip()
            # Until the comma that ends the declaration (outside any <>).
            while not (decl.endswith(",") and decl.count("<") == decl.count(">")):
                j += 1
                decl += lines[j].strip()
            name, rust_type = decl[len("pub ") : -1].split(":", 1)
            name = name.replace("r#", "").strip()
            repeated = "repeated" in attrs
            if attrs.startswith("btree_map") or attrs.startswith("map"):
                key, value = re.search(r'map = "(\w+), (\w+)"', attrs).groups()
                if value == "message":
                    package, message = resolve(module, map_value_type(rust_type))
                    value = f"{package}.{message}"
                out.append(f"  {tag} {name} map {value}")
            elif attrs.startswith("message"):
                package, message = resolve(module, inner_type(rust_type))
                out.append(f"  {tag} {name} {'repeated ' if repeated else ''}{package}.{message}")
            elif attrs.startswith("bytes"):
                out.append(f"  {tag} {name} {'repeated ' if repeated else ''}bytes")
            else:
                kind = KINDS[attrs.split(",")[0].strip()]
                out.append(f"  {tag} {name} {'repeated ' if repeated else ''}{kind}")
            i = j + 1
            continue
        i += 1


def main():
    src = os.path.join(k8s_pb_dir(), "src")
    out = ["# Generated by scripts/gen-protobuf-schema.py from the k8s-pb crate; do not edit.",
           "# message <package>.<Name>, then one line per field: <number> <rust name> [repeated|map] <type>"]
    for path in sorted(glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True)):
        module = os.path.relpath(os.path.dirname(path), src).split(os.sep)
        if module == ["."] or module[0] == "metrics":
            continue
        parse(path, module, out)
    text = "\n".join(out) + "\n"
    if CHECK:
        current = open(OUT).read() if os.path.exists(OUT) else ""
        if current != text:
            sys.exit(f"{OUT} is out of date: run scripts/gen-protobuf-schema.py")
        print(f"{OUT} is up to date")
        return
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT}: {sum(1 for l in out if l.startswith('message'))} messages")


main()
