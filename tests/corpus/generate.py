"""Writes the scanner's test corpus: malicious model files covering every technique the scanner
must catch (payloads are harmless `echo` commands and are never run), and benign real model
files it must pass without a finding.

    python generate.py OUT_DIR      ->  OUT_DIR/malicious/*, OUT_DIR/benign/*

Needs numpy, scikit-learn, joblib, h5py and py7zr (pinned in tests/interop/requirements.txt). Nothing here
loads the malicious files.
"""
import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import sys
import tarfile
import zipfile
import zlib

import h5py
import joblib
import numpy as np
import py7zr

PAYLOAD = "echo bastion-corpus"


# ---------------------------------------------------------------- pickle assembly helpers
def s_unicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def s_short(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def global_call(module, name, arg=PAYLOAD, proto=2):
    """GLOBAL module.name, called with one string argument."""
    return b"\x80" + bytes([proto]) + b"c" + module.encode() + b"\n" + name.encode() + b"\n" + s_unicode(arg) + b"\x85R."


def stack_global_call(module, name, arg=PAYLOAD):
    return b"\x80\x04" + s_short(module) + b"\x94" + s_short(name) + b"\x94\x93\x94" + s_short(arg) + b"\x85R."


class Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def real(fn, *args, proto=2):
    return pickle.dumps(Reduce(fn, *args), protocol=proto)


def torch_zip(data_pkl, *, member_name="archive/data.pkl", extra=None, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        z.writestr(member_name, data_pkl)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")
        for k, v in (extra or {}).items():
            z.writestr(k, v)
    return buf.getvalue()


def torch_state_dict_pickle(n_tensors=3):
    """The pickle torch.save writes for an OrderedDict of float tensors (storages by
    persistent id), assembled by hand: no torch needed."""
    out = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
    for i in range(n_tensors):
        out += s_unicode(f"layer{i}.weight")
        out += b"ctorch._utils\n_rebuild_tensor_v2\n("
        out += b"(" + s_unicode("storage") + b"ctorch\nFloatStorage\n" + s_unicode(str(i)) + s_unicode("cpu") + b"K\x04tQ"
        out += b"K\x00K\x02K\x02\x86K\x02K\x01\x86\x89ccollections\nOrderedDict\n)Rt" + b"R"
    out += b"u."
    return out


def tar_of(name, data, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_of(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue()


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def joblib_bytes(obj, compress=0):
    buf = io.BytesIO()
    if compress:
        # joblib writes compressed files only to paths.
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "m.joblib")
            joblib.dump(obj, p, compress=compress)
            return open(p, "rb").read()
    joblib.dump(obj, buf)
    return buf.getvalue()


# ---------------------------------------------------------------- protobuf / GGUF helpers
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def onnx_model(domain="", external=None):
    node = pb_field(1, "x") + pb_field(2, "y") + pb_field(4, "Relu" if not domain else "Evil") + (pb_field(7, domain) if domain else b"")
    tensor = pb_field(1, 4) + pb_field(2, 1) + pb_field(8, "w")
    if external:
        tensor += pb_field(13, pb_field(1, "location") + pb_field(2, external)) + pb_field(14, 1)
    else:
        tensor += pb_field(9, struct.pack("<4f", 1, 2, 3, 4))
    graph = pb_field(1, node) + pb_field(2, "g") + pb_field(5, tensor)
    opset = pb_field(1, domain) + pb_field(2, 1) if domain else pb_field(2, 17)
    return pb_field(1, 8) + pb_field(2, "bastion-corpus") + pb_field(7, graph) + pb_field(8, opset)


def saved_model(graph_nodes, functions=()):
    """A TensorFlow SavedModel protobuf: graph nodes (name, op) and library functions
    (name, [(node, op)…]), the way saved_model.pb nests them."""
    node = lambda name, op: pb_field(1, name) + pb_field(2, op)
    graph = b"".join(pb_field(1, node(n, op)) for n, op in graph_nodes)
    library = b""
    for fname, nodes in functions:
        f = pb_field(1, pb_field(1, fname)) + b"".join(pb_field(3, node(n, op)) for n, op in nodes)
        library += pb_field(1, f)
    if library:
        graph += pb_field(2, library)
    meta_graph = pb_field(1, pb_field(4, "serve")) + pb_field(2, graph)
    return pb_field(1, 1) + pb_field(2, meta_graph)


# The ops TensorFlow itself writes into every SavedModel to save and restore variables.
SAVER = ("__inference__traced_save_42", [("SaveV2", "SaveV2"), ("MergeV2Checkpoints", "MergeV2Checkpoints"), ("StringJoin", "StringJoin")])
RESTORER = ("__inference__traced_restore_57", [("RestoreV2", "RestoreV2"), ("Identity", "Identity")])
SERVING = [("x", "Placeholder"), ("w", "VarHandleOp"), ("m", "MatMul"), ("r", "Relu"), ("StatefulPartitionedCall", "StatefulPartitionedCall")]


def keras_h5(layers):
    """A legacy Keras HDF5 model file, written by h5py the way Keras lays it out."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = keras_config(layers).decode()
        weights = f.create_group("model_weights")
        for layer in layers:
            g = weights.create_group(layer["config"]["name"])
            g.create_dataset("kernel:0", data=np.ones((4, 4), dtype=np.float32))
    return buf.getvalue()


def seven_zip(members):
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(data, name)
    return buf.getvalue()


def gguf(template):
    def gstr(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b
    kvs = [("general.architecture", gstr("llama")), ("tokenizer.chat_template", gstr(template))]
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for k, v in kvs:
        out += gstr(k) + struct.pack("<I", 8) + v
    return out


def safetensors(tensors, data_len=None, extra=b""):
    header = json.dumps(tensors).encode()
    data_len = data_len if data_len is not None else max((t["data_offsets"][1] for t in tensors.values() if isinstance(t, dict) and "data_offsets" in t), default=0)
    return struct.pack("<Q", len(header)) + header + b"\0" * data_len + extra


def keras_config(layers):
    return json.dumps({"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": layers}}).encode()


def keras_zip(layers):
    return zip_of({"config.json": keras_config(layers), "metadata.json": b'{"keras_version": "3.5.0"}', "model.weights.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 64})


def dense(name):
    return {"module": "keras.layers", "class_name": "Dense", "config": {"name": name, "units": 4, "activation": "relu"}}


LAMBDA = {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "evil", "function": {"module": "builtins", "class_name": "function", "config": "4wEAAAAAAAAA", "registered_name": "function"}}}


# ---------------------------------------------------------------- the corpus
def malicious():
    m = {}
    for proto in range(6):
        m[f"pickle_p{proto}_os_system.pkl"] = real(os.system, PAYLOAD, proto=proto)
    import subprocess, builtins, runpy, importlib, pkgutil, marshal, types, operator, socket, webbrowser, shutil, timeit, cProfile, multiprocessing, pty, ctypes
    m["subprocess_popen.pkl"] = real(subprocess.Popen, [PAYLOAD])
    m["subprocess_check_output.pkl"] = real(subprocess.check_output, PAYLOAD, proto=4)
    m["builtins_eval.pkl"] = real(builtins.eval, "print(1)")
    m["builtins_exec.pkl"] = real(builtins.exec, "print(1)", proto=5)
    m["builtins_import.pkl"] = real(builtins.__import__, "os")
    m["builtins_open.pkl"] = real(builtins.open, "/etc/hostname")
    m["builtins_compile.pkl"] = real(builtins.compile, "1", "f", "eval")
    m["builtins_getattr.pkl"] = b"\x80\x02cbuiltins\ngetattr\ncbuiltins\nobject\n" + s_unicode("__subclasses__") + b"\x86R."
    m["runpy_run_path.pkl"] = real(runpy.run_path, "/nonexistent.py")
    m["importlib_import_module.pkl"] = real(importlib.import_module, "os")
    m["pkgutil_resolve_name.pkl"] = real(pkgutil.resolve_name, "os:system")
    m["marshal_loads.pkl"] = real(marshal.loads, b"\xe3")
    m["types_functiontype.pkl"] = global_call("types", "FunctionType")
    m["operator_attrgetter.pkl"] = real(operator.attrgetter, "system")
    m["operator_methodcaller.pkl"] = real(operator.methodcaller, "system", PAYLOAD)
    m["socket_create_connection.pkl"] = global_call("socket", "create_connection", "example.invalid")
    m["webbrowser_open.pkl"] = real(webbrowser.open, "https://example.invalid")
    m["shutil_rmtree.pkl"] = real(shutil.rmtree, "/nonexistent")
    m["timeit_timeit.pkl"] = real(timeit.timeit, "1")
    m["cprofile_run.pkl"] = real(cProfile.run, "1")
    m["multiprocessing_process.pkl"] = global_call("multiprocessing", "Process")
    m["pty_spawn.pkl"] = real(pty.spawn, "/bin/true")
    m["ctypes_cdll.pkl"] = global_call("ctypes", "CDLL", "libc.so.6")
    m["nt_system.pkl"] = global_call("nt", "system")
    m["pip_main.pkl"] = global_call("pip", "main", "install")
    m["torch_load_nested.pkl"] = global_call("torch", "load", "other.pt")
    m["torch_load_from_bytes.pkl"] = global_call("torch.storage", "_load_from_bytes", "x")
    m["stack_global_memo.pkl"] = stack_global_call("posix", "system")
    # STACK_GLOBAL names fetched back from the memo, after decoys.
    m["stack_global_memo_get.pkl"] = (b"\x80\x04" + s_short("os") + b"\x94" + b"0" + s_short("path") + b"\x94" + b"0"
                                      + b"h\x00" + s_short("system") + b"\x93" + s_short(PAYLOAD) + b"\x85R.")
    m["inst_opcode.pkl"] = b"(" + b"S'" + PAYLOAD.encode() + b"'\n" + b"ios\nsystem\n."
    m["obj_opcode.pkl"] = b"(cos\nsystem\nS'" + PAYLOAD.encode() + b"'\no."
    m["newobj_opcode.pkl"] = b"\x80\x02csubprocess\nPopen\n" + s_unicode(PAYLOAD) + b"\x85\x81."
    m["newobj_ex_opcode.pkl"] = b"\x80\x04" + s_short("subprocess") + s_short("Popen") + b"\x93" + s_short(PAYLOAD) + b"\x85}\x92."
    m["dotted_globals_trick.pkl"] = stack_global_call("collections", "OrderedDict.__init__.__globals__")
    m["dotted_through_numpy.pkl"] = stack_global_call("numpy", "testing._private.utils.os.system")
    m["builtins_module_dunder.pkl"] = stack_global_call("torch._utils", "_rebuild_tensor.__builtins__")
    m["build_on_global.pkl"] = b"\x80\x02ccollections\nOrderedDict\n}" + s_unicode("__reduce_ex__") + b"cos\nsystem\nsb."
    m["ext_code.pkl"] = b"\x80\x02\x82\x01" + s_unicode(PAYLOAD) + b"\x85R."
    m["computed_stack_global.pkl"] = (b"\x80\x04cbuiltins\nstr\n" + s_short("os") + b"\x85R" + s_short("system") + b"\x93"
                                      + s_short(PAYLOAD) + b"\x85R.")
    m["getattr_computed_call.pkl"] = (b"\x80\x02cbuiltins\ngetattr\ncbuiltins\nvars\n" + b")R" + s_unicode("x") + b"\x86R" + s_unicode(PAYLOAD) + b"\x85R.")
    m["stacked_benign_then_evil.pkl"] = pickle.dumps({"a": 1}, protocol=2) + real(os.system, PAYLOAD)
    m["truncated_evil.pkl"] = real(os.system, PAYLOAD)[:-3]
    m["broken_after_global.pkl"] = b"\x80\x02cos\nsystem\n\xff\xff"
    # PyTorch checkpoints.
    evil = real(os.system, PAYLOAD)
    m["torch_zip_data_pkl.pt"] = torch_zip(evil)
    m["torch_zip_no_extension_member"] = torch_zip(torch_state_dict_pickle(), extra={"archive/data/0": b"\0" * 64, "archive/extra": evil})
    m["torch_zip_deflated.pt"] = torch_zip(evil, compress=zipfile.ZIP_DEFLATED)
    bad_crc = bytearray(torch_zip(evil))
    i = bad_crc.find(b"PK\x01\x02")
    bad_crc[i + 16:i + 20] = b"\xde\xad\xbe\xef"  # central directory CRC
    m["torch_zip_bad_crc.pt"] = bytes(bad_crc)
    legacy = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2) + pickle.dumps({"protocol_version": 1001}, protocol=2) + evil
    m["torch_legacy_stacked.pt"] = legacy
    m["torch_legacy_tar.tar"] = tar_of("pickle", evil)
    # joblib, raw and compressed.
    for c in ["zlib", "gzip", "bz2", "xz", "lzma"]:
        m[f"joblib_{c}.joblib"] = joblib_bytes(Reduce(os.system, PAYLOAD), compress=(c, 3))
    m["joblib_object_array.joblib"] = joblib_bytes({"w": np.array([Reduce(os.system, PAYLOAD)], dtype=object)})
    # NumPy.
    m["npy_object_array.npy"] = npy_bytes(np.array([Reduce(os.system, PAYLOAD)], dtype=object))
    m["npz_object_array.npz"] = zip_of({"a.npy": npy_bytes(np.array([Reduce(os.system, PAYLOAD)], dtype=object))})
    # Wrappers.
    m["gzip_wrapped.pkl.gz"] = gzip.compress(evil)
    m["bz2_wrapped.bin"] = bz2.compress(evil)
    m["xz_wrapped.bin"] = lzma.compress(evil)
    m["zlib_wrapped.bin"] = zlib.compress(evil)
    m["tar_gz_wrapped.tgz"] = tar_of("model/model.pkl", evil, mode="w:gz")
    m["zip_in_zip.zip"] = zip_of({"inner.zip": zip_of({"model.pkl": evil})})
    m["disguised_as_text.txt"] = evil
    # Other formats.
    m["keras_lambda.keras"] = keras_zip([dense("d1"), LAMBDA])
    m["keras_lambda_h5.h5"] = b"\x89HDF\r\n\x1a\n" + b"\0" * 100 + keras_config([LAMBDA]) + b"\0" * 100
    m["keras_custom_module.keras"] = keras_zip([{"module": "os", "class_name": "system", "config": {"name": "x"}}])
    m["onnx_external_escape.onnx"] = onnx_model(external="../../../etc/passwd")
    m["onnx_external_absolute.onnx"] = onnx_model(external="/etc/shadow")
    m["onnx_custom_domain.onnx"] = onnx_model(domain="com.attacker.ops")
    m["seven_zip_wrapped.7z"] = seven_zip({"model/model.pkl": evil, "README": b"a model"})
    m["seven_zip_in_tar.tar"] = tar_of("bundle/model.7z", seven_zip({"model.pkl": evil}))
    m["keras_lambda_h5py.h5"] = keras_h5([dense("d1"), LAMBDA])
    m["tf_savedmodel_readfile.pb"] = saved_model(SERVING + [("leak", "ReadFile")], [SAVER])
    m["tf_savedmodel_writefile_in_function.pb"] = saved_model(SERVING, [SAVER, ("__inference_serve_9", [("w", "WriteFile")])])
    m["tf_savedmodel_pyfunc.pb"] = saved_model(SERVING + [("py", "EagerPyFunc")])
    m["gguf_template_injection.gguf"] = gguf("{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m.content }}{% endfor %}")
    m["safetensors_overlap.safetensors"] = safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})
    m["safetensors_out_of_range.safetensors"] = safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, data_len=8)
    m["safetensors_huge_header.safetensors"] = struct.pack("<Q", 10**12) + b"{}"
    m["safetensors_shape_mismatch.safetensors"] = safetensors({"a": {"dtype": "F32", "shape": [100], "data_offsets": [0, 16]}})
    return m


def benign():
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    models = {
        "logistic": LogisticRegression(),
        "linear": LinearRegression(),
        "ridge": Ridge(),
        "random_forest": RandomForestClassifier(n_estimators=5, random_state=0),
        "gradient_boosting": GradientBoostingClassifier(n_estimators=5, random_state=0),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=5),
        "svc": SVC(probability=True, random_state=0),
        "knn": KNeighborsClassifier(),
        "tree": DecisionTreeClassifier(random_state=0),
        "naive_bayes": GaussianNB(),
        "mlp": MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0),
        "pipeline": Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]),
        "kmeans": KMeans(n_clusters=2, n_init=2, random_state=0),
        "pca": PCA(n_components=2),
    }
    b = {}
    import warnings
    warnings.filterwarnings("ignore")
    for name, model in models.items():
        model.fit(X, y)
        b[f"sklearn_{name}.pkl"] = pickle.dumps(model, protocol=pickle.DEFAULT_PROTOCOL)
    b["sklearn_logistic_p2.pkl"] = pickle.dumps(models["logistic"], protocol=2)
    b["sklearn_random_forest.joblib"] = joblib_bytes(models["random_forest"])
    for c in ["zlib", "gzip", "bz2", "xz", "lzma"]:
        b[f"sklearn_pipeline_{c}.joblib"] = joblib_bytes(models["pipeline"], compress=(c, 3))
    b["numpy_float.npy"] = npy_bytes(np.arange(100, dtype=np.float32))
    b["numpy_structured.npy"] = npy_bytes(np.zeros(3, dtype=[("Ocean", "f8"), ("b", "i4")]))
    b["numpy_arrays.npz"] = zip_of({"a.npy": npy_bytes(np.ones(5)), "b.npy": npy_bytes(np.zeros((2, 2)))})
    b["numpy_pickled_array.pkl"] = pickle.dumps(np.arange(10), protocol=4)
    b["torch_state_dict.pt"] = torch_zip(torch_state_dict_pickle(), extra={f"archive/data/{i}": struct.pack("<4f", 1, 2, 3, 4) for i in range(3)})
    b["torch_state_dict_deflated.pt"] = torch_zip(torch_state_dict_pickle(), compress=zipfile.ZIP_DEFLATED)
    b["safetensors_valid.safetensors"] = safetensors({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}})
    b["onnx_valid.onnx"] = onnx_model()
    b["onnx_external_local.onnx"] = onnx_model(external="weights.bin")
    b["keras_dense.keras"] = keras_zip([dense("d1"), dense("d2")])
    b["keras_dense_h5.h5"] = b"\x89HDF\r\n\x1a\n" + b"\0" * 100 + keras_config([dense("d1")]) + b"\0" * 100
    b["keras_dense_h5py.h5"] = keras_h5([dense("d1"), dense("d2")])
    b["tf_savedmodel.pb"] = saved_model(SERVING, [SAVER, RESTORER])
    b["sklearn_pipeline.7z"] = seven_zip({"model.joblib": joblib_bytes(models["pipeline"]), "model.pkl": b["sklearn_pipeline.pkl"]})
    b["gguf_chat_template.gguf"] = gguf("{% for message in messages %}<|{{ message.role }}|>{{ message.content }}{% endfor %}")
    b["plain_dict.pkl"] = pickle.dumps({"weights": [1.0, 2.0], "name": "m"}, protocol=5)
    b["model_folder_config.json"] = json.dumps({"hidden_size": 8}).encode()
    return b


def main():
    out = sys.argv[1]
    for kind, files in (("malicious", malicious()), ("benign", benign())):
        d = os.path.join(out, kind)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{len(files)} {kind} files in {d}")


if __name__ == "__main__":
    main()
