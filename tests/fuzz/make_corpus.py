#!/usr/bin/env python3
"""Writes the seed corpus of the fuzzers (tests/fuzz/corpus/<target>/), deterministically.

The files are committed; rerun this only to change the seeds:  python3 tests/fuzz/make_corpus.py
Each seed is a tiny valid or broken example (< 4 KB). For the idx target the first byte selects
the variant (see entries.hpp): 0 raw file, 1 raw bytes named .gz, 2 gzip-compressed by the
harness, 3 an images+labels pair (2-byte images length, images, labels; +4: both gzipped).
"""
import gzip
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def idx(dims, payload, type_byte=0x08, ndims=None):
    head = bytes([0, 0, type_byte, len(dims) if ndims is None else ndims])
    return head + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)


def gz(b):
    return gzip.compress(b, compresslevel=9, mtime=0)


def pair(images, labels, gzipped=False):
    mode = 7 if gzipped else 3
    return bytes([mode]) + struct.pack(">H", len(images)) + images + labels


def safetensors(tensors, metadata=None, dtype="F32", header_len=None, trailer=b"", raw_header=None):
    """tensors: list of (name, shape, values); values are floats packed little-endian."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, shape, values in tensors:
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    js = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    n = len(js) if header_len is None else header_len
    return struct.pack("<Q", n) + js + data + trailer


def small_model(inp=4, hidden=(3,), classes=10):
    tensors, prev = [], inp
    for i, w in enumerate(list(hidden) + [classes]):
        tensors.append(("fc%d.weight" % (i + 1), [w, prev], [0.01 * (k % 7) for k in range(w * prev)]))
        tensors.append(("fc%d.bias" % (i + 1), [w], [0.5] * w))
        prev = w
    return tensors


def main():
    seeds = {"idx": {}, "checkpoint": {}}
    s = seeds["idx"]
    labels = idx([5], [0, 1, 2, 9, 3])
    images = idx([3, 2, 2], range(12))
    s["raw_labels_ok"] = b"\x00" + labels
    s["raw_images_ok"] = b"\x00" + images
    s["raw_4d_ok"] = b"\x00" + idx([1, 2, 1, 2], [7, 7, 7, 7])
    s["raw_bad_magic"] = b"\x00" + b"\x1f\x8b" + images[2:]
    s["raw_bad_type"] = b"\x00" + idx([5], [1] * 5, type_byte=0x0D)
    s["raw_zero_ndims"] = b"\x00" + bytes([0, 0, 8, 0])
    s["raw_five_ndims"] = b"\x00" + idx([1, 1, 1, 1, 1], [0])
    s["raw_zero_dim"] = b"\x00" + idx([0, 28, 28], [])
    s["raw_overflow"] = b"\x00" + idx([0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], [])
    s["raw_huge_claim"] = b"\x00" + idx([1 << 14, 1 << 8, 1 << 8], [1, 2, 3])  # 1 GiB declared, 3 bytes
    s["raw_truncated_header"] = b"\x00" + images[:9]
    s["raw_truncated_data"] = b"\x00" + images[:-3]
    s["raw_trailing"] = b"\x00" + images + b"\x00\x01"
    s["raw_empty"] = b"\x00"
    s["gzname_valid"] = b"\x01" + gz(images)
    s["gzname_not_gzip"] = b"\x01" + images
    s["gzname_truncated"] = b"\x01" + gz(images)[:-6]
    s["gzname_bad_crc"] = b"\x01" + gz(images)[:-8] + b"\x00" * 8
    s["gzname_two_members"] = b"\x01" + gz(images[:10]) + gz(images[10:])
    s["gz_images_ok"] = b"\x02" + images
    s["gz_labels_ok"] = b"\x02" + labels
    s["gz_truncated"] = b"\x02" + images[:-1]
    s["pair_ok"] = pair(images, idx([3], [1, 2, 3]))
    s["pair_ok_gz"] = pair(images, idx([3], [9, 0, 4]), gzipped=True)
    s["pair_count_mismatch"] = pair(images, idx([4], [1, 2, 3, 4]))
    s["pair_label_10"] = pair(images, idx([3], [1, 10, 3]))
    s["pair_label_255"] = pair(images, idx([3], [255, 0, 0]))
    s["pair_labels_as_images"] = pair(labels, labels)
    s["pair_images_as_labels"] = pair(images, images)
    s["pair_big_image"] = pair(idx([1, 5000, 1], [0] * 5000)[:4000 - 8], idx([1], [0]))

    c = seeds["checkpoint"]
    meta = {"format": "pt", "input": "4", "hidden": "3", "classes": "10"}
    ok = safetensors(small_model(), meta)
    c["small_ok"] = ok
    c["small2_ok"] = safetensors(small_model(2, (2, 2)), dict(meta, input="2", hidden="2,2"))
    c["no_metadata"] = safetensors(small_model())
    c["empty_header"] = safetensors([], raw_header=b"{}")
    c["truncated"] = ok[: len(ok) - 37]
    c["truncated_header"] = ok[:40]
    c["short_file"] = ok[:5]
    c["header_len_beyond"] = safetensors(small_model(), meta, header_len=1 << 40)
    c["header_len_max"] = b"\xff" * 8 + b"{}"
    c["garbage_json"] = safetensors([], raw_header=b'{"fc1.weight": {"dtype": F32, [[[')
    c["not_object"] = safetensors([], raw_header=b"[1, 2, 3]")
    c["bad_utf8"] = safetensors([], raw_header=b'{"\xff\xfe": 1}')
    c["dtype_f16"] = safetensors(small_model(), meta, dtype="F16")
    c["wrong_names"] = safetensors([(n.replace("fc", "layer"), sh, v) for n, sh, v in small_model()], meta)
    c["wrong_shapes"] = safetensors([(n, list(reversed(sh)), v) for n, sh, v in small_model()], meta)
    c["other_arch"] = safetensors(small_model(4, (5,)), meta)
    c["extra_tensor"] = safetensors(small_model() + [("fc9.bias", [1], [1.0])], meta)
    c["trailing_bytes"] = safetensors(small_model(), meta, trailer=b"\x00" * 4)
    c["negative_dim"] = safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}')
    c["huge_dim"] = safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}')
    c["float_offsets"] = safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0.0,4.5]}}')
    c["overlap"] = safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                              b'"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}') + b"\x00" * 4
    c["gap"] = safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}') + b"\x00" * 8
    c["metadata_not_strings"] = safetensors(small_model(), {"hidden": 3, "input": ["4"]})
    c["scalar_tensor"] = safetensors([("s", [], [1.5])])
    # Deep nesting where a message quotes the value: a recursive dump() overflowed the stack (the
    # harness runs on a 64 KiB stack, so 1800 levels are enough to show it).
    c["nested_deep_dtype"] = safetensors([], raw_header=b'{"a":{"dtype":' + b"[" * 1800 + b"]" * 1800 +
                                         b',"shape":[1],"data_offsets":[0,4]}}')
    c["nested_deep_shape"] = safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[' + b"{\"k\":[" * 400 +
                                         b"]}" * 400 + b'],"data_offsets":[0,4]}}')
    c["nested_deep_metadata"] = safetensors([], raw_header=b'{"__metadata__":' + b"[" * 1800 + b"]" * 1800 + b"}")

    for target, files in seeds.items():
        d = os.path.join(HERE, "corpus", target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in sorted(files.items()):
            assert len(data) < 4096, (target, name, len(data))
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds in %s" % (target, len(files), os.path.relpath(d)))


if __name__ == "__main__":
    main()
