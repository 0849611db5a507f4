#!/usr/bin/env python3
"""Generates crates/skiff-api/src/protobuf/schema.json, the table the apiserver's protobuf
decoder (crates/skiff-api/src/protobuf.rs) walks to turn a `application/vnd.kubernetes.protobuf`
request body into the JSON form Kubernetes uses.

For every message reachable from the kinds Skiff serves (crates/skiff-api/src/resources.rs) and
from the subresource bodies it accepts (Binding, Eviction, Scale), the schema lists each field's
tag, JSON name, wire type and whether a zero value must be kept. The facts come from three
sources, each used for what only it knows:

- k8s-pb 0.9 (prost types generated from Kubernetes' .proto files): field tags and wire types.
- k8s-openapi 0.29: JSON field names, from its Deserialize impls (`"volumeID" =>
  Field::Key_volume_id`), matched to prost's snake_case names.
- The Go types of kubernetes/api and kubernetes/apimachinery (`types.go` struct tags) for what
  neither crate records: whether a field is a Go pointer, whether its JSON tag has `omitempty`,
  and whether it is an embedded `json:",inline"` struct (Volume's VolumeSource, Probe's
  ProbeHandler). Kubernetes' gogo-generated marshallers write every non-pointer field, so
  kubectl sends `generateName: ""`, `nodePort: 0` and so on; Go's JSON encoder then drops those
  (omitempty) while keeping a pointer set to zero (`replicas: 0`). The decoder copies that:
  a zero scalar is kept only where the schema says so. The Go JSON name is also checked
  against k8s-openapi's; a disagreement stops the generator.

Usage (stdlib only):

    git clone --depth 1 --branch v0.35.7 https://github.com/kubernetes/api /tmp/k8s-go/api
    git clone --depth 1 --branch v0.35.7 https://github.com/kubernetes/apimachinery \\
        /tmp/k8s-go/apimachinery
    tools/gen-protobuf-schema.py --go-api /tmp/k8s-go/api \\
        --go-apimachinery /tmp/k8s-go/apimachinery

k8s-pb and k8s-openapi are found in Cargo's registry (`$CARGO_HOME/registry/src/*/`); run
`cargo fetch` first, or pass --k8s-pb / --k8s-openapi. The Go tag should be the Kubernetes
release k8s-pb was generated from (0.9.0: 1.35); the generator stops if a proto field has no Go
counterpart.

Schema format (one message per line, to keep diffs readable):

    {"kinds": {"<apiVersion>": {"<Kind>": "<message>"}},
     "special": {"<message>": "IntOrString" | "Quantity" | "Time" | "MicroTime" | "Duration" |
                              "FieldsV1" | "RawExtension"},
     "messages": {"<message>": [[tag, "jsonName", "type", keepZero], ...]}}

`type` is a scalar (`string`, `bytes`, `bool`, `int32`, `int64`, `double`) or a message name,
prefixed by `[]` for repeated fields and `map:` for maps (keys are always strings). A JSON name
of "" marks an inline field: the message's fields are merged into the parent. Special messages
are listed with their proto field names; the decoder renders them in their JSON forms.
"""

import argparse
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOURCES_RS = os.path.join(ROOT, "crates/skiff-api/src/resources.rs")
OUTPUT = os.path.join(ROOT, "crates/skiff-api/src/protobuf/schema.json")

# Request bodies of subresources, which are not kinds of their own in the resource table:
# pods/binding, pods/eviction and */scale.
EXTRA_KINDS = [("", "v1", "Binding"), ("policy", "v1", "Eviction"), ("autoscaling", "v1", "Scale")]
# The review kinds (`resources::reviews()`) and TokenRequest (serviceaccounts/token) were added
# to schema.json by hand from k8s-pb's authentication/authorization messages (request fields
# only), and so was certificates/v1 CertificateSigningRequest (its spec's `extra` map of
# ExtraValue, a Go slice type the generator cannot follow, left out: the apiserver sets it);
# add them here before regenerating.

# Messages whose JSON form is not an object of their fields.
SPECIAL = {
    ("apimachinery/pkg/util/intstr", "IntOrString"): "IntOrString",
    ("apimachinery/pkg/api/resource", "Quantity"): "Quantity",
    ("apimachinery/pkg/apis/meta/v1", "Time"): "Time",
    ("apimachinery/pkg/apis/meta/v1", "MicroTime"): "MicroTime",
    ("apimachinery/pkg/apis/meta/v1", "Duration"): "Duration",
    ("apimachinery/pkg/apis/meta/v1", "FieldsV1"): "FieldsV1",
    ("apimachinery/pkg/runtime", "RawExtension"): "RawExtension",
}

# k8s-openapi version modules, searched in order: Skiff's own first, then newer ones for fields
# k8s-pb knows and 1.33 does not (JSON names never change between releases).
OPENAPI_VERSIONS = ["v1_33", "v1_34", "v1_35", "v1_36", "v1_37"]

SCALARS = {"string", "bytes", "bool", "int32", "int64", "double"}


def fail(msg):
    sys.exit(f"gen-protobuf-schema: {msg}")


def registry_crate(name):
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(cargo_home, "registry/src/*", name)))
    if not found:
        fail(f"{name} is not in Cargo's registry; run `cargo fetch` or pass its path")
    return found[-1]


# ---------------------------------------------------------------------------------------------
# k8s-pb: messages, tags and wire types.


PROST_ATTR = re.compile(r"^\s*#\[prost\((.*)\)\]\s*$")
STRUCT_START = re.compile(r"^pub struct (\w+) \{\s*$")
FIELD_START = re.compile(r"^\s*pub (r#)?(\w+):\s*(.*)$")


def parse_prost_attr(text):
    """`message, optional, tag = "1"` -> {"message": None, "optional": None, "tag": "1"}."""
    out = {}
    for part in re.findall(r'\w+(?:\s*=\s*"[^"]*")?', text):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
        else:
            out[part] = None
    return out


def resolve_path(module, path):
    """Resolves a Rust type path used in `module` to (module, name)."""
    segs = path.split("::")
    mod = list(module)
    while segs and segs[0] == "super":
        segs.pop(0)
        mod.pop()
    return "/".join(mod + segs[:-1]), segs[-1]


def message_type(module, rust_type):
    """The message named by a field's Rust type (inside Option/Vec/Box/BTreeMap)."""
    t = re.sub(r"\s+", "", rust_type).replace(",>", ">")
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<",
                    "::prost::alloc::boxed::Box<"):
        while t.startswith(wrapper):
            t = t[len(wrapper):-1]
    if t.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = t[len("::prost::alloc::collections::BTreeMap<"):-1]
        key, value = inner.split(",", 1)
        if key != "::prost::alloc::string::String":
            fail(f"map with non-string key: {rust_type}")
        t = value
    return resolve_path(module.split("/"), t)


def parse_k8s_pb(src):
    """{(module, Name): [field]} with field = {tag, snake, kind, label, msg}."""
    messages = {}
    for path in glob.glob(os.path.join(src, "**/mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "/")
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            m = STRUCT_START.match(lines[i])
            if re.match(r"^\s*pub mod \w+ \{", lines[i]):
                fail(f"{path}:{i + 1}: nested module (oneof or enum) not supported")
            i += 1
            if not m:
                continue
            fields, attr = [], None
            while lines[i] != "}":
                line = lines[i]
                a = PROST_ATTR.match(line)
                fm = FIELD_START.match(line)
                if a:
                    attr = parse_prost_attr(a.group(1))
                elif fm:
                    if attr is None:
                        fail(f"{path}:{i + 1}: field without #[prost] attribute")
                    rust_type = fm.group(3)
                    while not (rust_type.rstrip().endswith(",")
                               and rust_type.count("<") == rust_type.count(">")):
                        i += 1
                        rust_type += lines[i].strip()
                    fields.append(field_from_attr(path, i, module, fm.group(2), attr, rust_type))
                    attr = None
                i += 1
            messages[(module, m.group(1))] = fields
    return messages


def field_from_attr(path, line, module, snake, attr, rust_type):
    field = {"tag": int(attr.pop("tag")), "snake": snake}
    if "btree_map" in attr:
        key, value = [s.strip() for s in attr["btree_map"].split(",")]
        if key != "string":
            fail(f"{path}:{line}: map key {key}")
        field["label"] = "map"
        field["kind"] = value
    else:
        field["label"] = "repeated" if "repeated" in attr else "optional"
        kinds = [k for k in attr if k in SCALARS or k == "message"]
        if len(kinds) != 1:
            fail(f"{path}:{line}: cannot read #[prost({attr})]")
        field["kind"] = kinds[0]
    if field["kind"] == "message":
        field["msg"] = message_type(module, rust_type.rstrip().rstrip(","))
    elif field["kind"] not in SCALARS:
        fail(f"{path}:{line}: unsupported wire type {field['kind']}")
    return field


# ---------------------------------------------------------------------------------------------
# k8s-openapi: JSON names.


OPENAPI_KEY = re.compile(r'^\s*"([^"]+)" => Field::Key_(\w+),\s*$')


def parse_k8s_openapi(src):
    """[{(module, lowercase Name): {snake: jsonName}}], one map per version, in search order."""
    out = []
    for version in OPENAPI_VERSIONS:
        names = {}
        for path in glob.glob(os.path.join(src, "src", version, "**/*.rs"), recursive=True):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            m = re.match(r"// Generated from definition io\.k8s\.([\w.]+)\.(\w+)\n", text)
            if not m:
                continue
            module = m.group(1).replace(".", "/")
            keys = {}
            for line in text.split("\n"):
                k = OPENAPI_KEY.match(line)
                if k:
                    keys[k.group(2)] = k.group(1)
            names[(module, m.group(2).lower())] = keys
        out.append(names)
    return out


def openapi_name(openapi, module, name, snake):
    for names in openapi:
        keys = names.get((module, name.lower()))
        if keys is None:
            continue
        for candidate in (snake, snake + "_"):
            if candidate in keys:
                return keys[candidate]
    return None


# ---------------------------------------------------------------------------------------------
# Go types: pointers, omitempty and inline.


GO_STRUCT = re.compile(r"^type (\w+) struct \{\s*$")
GO_TAG = re.compile(r'(\w+):"([^"]*)"')


def go_dir(roots, module):
    head, _, rest = module.partition("/")
    if head not in roots:
        fail(f"no Go source for module {module}")
    return os.path.join(roots[head], rest)


def parse_go_package(directory):
    """{lowercase Name: {tag: {json, omitempty, pointer}}} from a package's struct tags."""
    structs = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.go"))):
        base = os.path.basename(path)
        if base.endswith("_test.go") or base.startswith(("generated.", "zz_generated")):
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        current = None
        for line in lines:
            m = GO_STRUCT.match(line)
            if m:
                current = structs.setdefault(m.group(1).lower(), {})
                continue
            if line.startswith("}"):
                current = None
                continue
            if current is None or "`" not in line or line.lstrip().startswith("//"):
                continue
            decl, tag_text = line.split("`", 1)
            tags = dict(GO_TAG.findall(tag_text))
            if tags.get("protobuf", "-") == "-":
                continue
            words = decl.split()
            go_type = words[0] if len(words) == 1 else " ".join(words[1:])
            json_tag = tags.get("json", "").split(",")
            current[int(tags["protobuf"].split(",")[1])] = {
                "json": json_tag[0],
                "omitempty": "omitempty" in json_tag[1:],
                "inline": "inline" in json_tag[1:],
                "pointer": go_type.startswith("*"),
            }
    return structs


# ---------------------------------------------------------------------------------------------
# Putting it together.


def short_name(module, name):
    for prefix in ("api/", "apimachinery/pkg/apis/", "apimachinery/pkg/api/",
                   "apimachinery/pkg/util/", "apimachinery/pkg/"):
        if module.startswith(prefix):
            return module[len(prefix):].replace("/", ".") + "." + name
    fail(f"unexpected module {module}")


def camel(snake):
    first, *rest = snake.split("_")
    return first + "".join(w[:1].upper() + w[1:] for w in rest)


def served_kinds():
    with open(RESOURCES_RS, encoding="utf-8") as f:
        text = f.read()
    found = re.findall(r'res\(\s*"([^"]*)",\s*"([^"]*)",\s*"([^"]*)"', text)
    if not found:
        fail(f"no res(...) rows in {RESOURCES_RS}")
    return sorted(set(found) | set(EXTRA_KINDS))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k8s-pb", help="k8s-pb 0.9 source (default: Cargo's registry)")
    ap.add_argument("--k8s-openapi", help="k8s-openapi 0.29 source (default: Cargo's registry)")
    ap.add_argument("--go-api", required=True, help="checkout of kubernetes/api")
    ap.add_argument("--go-apimachinery", required=True, help="checkout of kubernetes/apimachinery")
    ap.add_argument("--output", default=OUTPUT)
    args = ap.parse_args()

    pb = parse_k8s_pb(os.path.join(args.k8s_pb or registry_crate("k8s-pb-0.9.0"), "src"))
    openapi = parse_k8s_openapi(args.k8s_openapi or registry_crate("k8s-openapi-0.29.0"))
    go_roots = {"api": args.go_api, "apimachinery": args.go_apimachinery}
    go_packages = {}

    kinds, queue = {}, []
    for group, version, kind in served_kinds():
        module = f"api/{group.split('.')[0] or 'core'}/{version}"
        if (module, kind) not in pb:
            fail(f"k8s-pb has no message {module}/{kind}")
        api_version = f"{group}/{version}" if group else version
        kinds.setdefault(api_version, {})[kind] = short_name(module, kind)
        queue.append((module, kind))

    messages, special, seen = {}, {}, set()
    not_in_openapi, referenced_by_name, go_named = set(), set(), []
    while queue:
        key = queue.pop()
        if key in seen:
            continue
        seen.add(key)
        module, name = key
        short = short_name(module, name)
        if short in messages:
            fail(f"two messages are both called {short}")
        if key in SPECIAL:
            special[short] = SPECIAL[key]
            messages[short] = [[f["tag"], camel(f["snake"]), f["kind"], 1] for f in pb[key]]
            continue
        if module not in go_packages:
            go_packages[module] = parse_go_package(go_dir(go_roots, module))
        go_fields = go_packages[module].get(name.lower())
        if go_fields is None:
            fail(f"no Go struct {name} in {go_dir(go_roots, module)}")
        fields = []
        for f in pb[key]:
            go = go_fields.get(f["tag"])
            if go is None:
                fail(f"{short}: proto field {f['tag']} ({f['snake']}) is not in the Go type; "
                     "is the Go checkout older than k8s-pb?")
            if go["json"] == "-":
                continue
            json_name = "" if go["inline"] else go["json"]
            from_openapi = openapi_name(openapi, module, name, f["snake"])
            if from_openapi is None and json_name:
                go_named.append(f"{short}.{json_name}")
            if from_openapi is not None and from_openapi != json_name:
                fail(f"{short}.{f['snake']}: k8s-openapi says {from_openapi!r}, Go {json_name!r}")
            if from_openapi is None and json_name and not any(
                    (module, name.lower()) in names for names in openapi):
                not_in_openapi.add(short)
            wire = f["kind"]
            if wire == "message":
                queue.append(f["msg"])
                wire = short_name(*f["msg"])
                if json_name:
                    referenced_by_name.add(wire)
            prefix = {"map": "map:", "repeated": "[]", "optional": ""}[f["label"]]
            keep_zero = int(go["pointer"] or not go["omitempty"])
            fields.append([f["tag"], json_name, prefix + wire, keep_zero])
        messages[short] = sorted(fields)

    # k8s-openapi leaves out types that are only ever inlined (networking/v1 IngressRuleValue);
    # any other type it lacks may have a JSON form of its own, which the schema cannot express.
    for short in sorted(not_in_openapi & referenced_by_name):
        fail(f"{short}: k8s-openapi has no such type; does its JSON form differ?")

    write(args.output, kinds, special, messages)
    print(f"{args.output}: {len(messages)} messages, {len(special)} special, "
          f"{sum(len(v) for v in kinds.values())} kinds", file=sys.stderr)
    if go_named:
        print(f"named from the Go types only (k8s-openapi lacks them): {', '.join(go_named)}",
              file=sys.stderr)


def write(path, kinds, special, messages):
    dump = lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True)
    lines = ["{", f'"kinds":{dump(kinds)},', f'"special":{dump(special)},', '"messages":{']
    names = sorted(messages)
    for i, name in enumerate(names):
        comma = "," if i + 1 < len(names) else ""
        lines.append(f"{json.dumps(name)}:{dump(messages[name])}{comma}")
    lines += ["}", "}"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
